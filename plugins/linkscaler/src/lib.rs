//! The built-in `link` scaler: keeps one link (and the configs it names) in place, as wadm's
//! link trait does, and repairs drift: a link or config changed behind trellis's back is put
//! back as the manifest says.
//!
//! Order of work in one pass: configs the manifest defines (with properties) are put when
//! missing or different; configs it only names must exist already; the link is put once every
//! config it names exists, so a host never resolves a link to a missing config.

use serde::Deserialize;
use trellis_sdk::config::{self, ConfigProperty};
use trellis_sdk::{
    Command, Diagnostic, Lattice, Link, PluginInfo, Reconciled, Scaler, ScalerContext, Status,
};

/// The link name when the manifest gives none.
pub const DEFAULT_LINK_NAME: &str = "default";

/// The trait's properties, as wadm 0.2x's `LinkProperty` (deprecated fields included).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkProperties {
    pub namespace: String,
    pub package: String,
    pub interfaces: Vec<String>,
    pub target: Target,
    #[serde(default)]
    pub source: Option<ConfigDefinition>,
    #[serde(default)]
    pub name: Option<String>,
    /// Deprecated form of `source.config`.
    #[serde(default)]
    pub source_config: Option<Vec<ConfigProperty>>,
    /// Deprecated form of `target.config`, used when `target` is a plain name.
    #[serde(default)]
    pub target_config: Option<Vec<ConfigProperty>>,
}

/// `target: name` or `target: {name, config}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Target {
    Name(String),
    Full(TargetConfig),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The target's name among the application's components.
    pub name: String,
    #[serde(default)]
    pub config: Vec<ConfigProperty>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigDefinition {
    #[serde(default)]
    pub config: Vec<ConfigProperty>,
}

impl LinkProperties {
    pub fn link_name(&self) -> &str {
        self.name.as_deref().unwrap_or(DEFAULT_LINK_NAME)
    }

    pub fn target_name(&self) -> &str {
        match &self.target {
            Target::Name(name) => name,
            Target::Full(t) => &t.name,
        }
    }

    /// Source configs: `source.config`, else the deprecated `source_config`.
    pub fn source_configs(&self) -> &[ConfigProperty] {
        match (&self.source, &self.source_config) {
            (Some(s), _) => &s.config,
            (None, Some(c)) => c,
            (None, None) => &[],
        }
    }

    /// Target configs: `target.config`, or the deprecated `target_config` with a plain name.
    pub fn target_configs(&self) -> &[ConfigProperty] {
        match &self.target {
            Target::Full(t) => &t.config,
            Target::Name(_) => self.target_config.as_deref().unwrap_or(&[]),
        }
    }

    fn configs(&self) -> impl Iterator<Item = &ConfigProperty> {
        self.source_configs().iter().chain(self.target_configs())
    }
}

pub struct LinkScaler;

impl Scaler for LinkScaler {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "linkscaler".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            trait_types: vec!["link".into()],
            description: "Keeps a link and its configs in place and repairs drift".into(),
        }
    }

    fn reconcile(ctx: &ScalerContext, lattice: &dyn Lattice) -> Reconciled {
        let properties = match ctx.properties::<LinkProperties>() {
            Ok(p) => p,
            Err(e) => return Reconciled::failed(e.to_string()),
        };
        let target_name = properties.target_name();
        let Some(target) = ctx.component_named(target_name) else {
            let names: Vec<&str> = ctx.components.iter().map(|c| c.name.as_str()).collect();
            return Reconciled::failed(format!(
                "link target '{target_name}' is not a component of app '{}' (components: {})",
                ctx.app,
                names.join(", ")
            ));
        };
        let desired = Link {
            source_id: ctx.component.id.clone(),
            target: target.id.clone(),
            name: properties.link_name().to_string(),
            wit_namespace: properties.namespace.clone(),
            wit_package: properties.package.clone(),
            interfaces: properties.interfaces.clone(),
            source_config: names(properties.source_configs()),
            target_config: names(properties.target_configs()),
        };

        let configs = config::converge_configs(properties.configs(), lattice);
        let mut commands = configs.commands;
        if !configs.missing_external.is_empty() {
            return Reconciled::new(
                commands,
                Status::Waiting(config::describe_missing(&configs.missing_external)),
            );
        }
        let being_created = !configs.created.is_empty();

        let existing = lattice.links_from(&desired.source_id);
        let current = existing.iter().find(|l| l.same_slot(&desired));
        let link_matches = current.is_some_and(|l| same_link(l, &desired));
        // Put the link once the configs it names exist (ours are put in this pass).
        if !link_matches && !being_created {
            commands.push(Command::PutLink(desired.clone()));
        }
        let status = if commands.is_empty() {
            Status::Deployed
        } else if being_created {
            Status::Reconciling(format!(
                "putting the configs of link '{}' before the link",
                desired.name
            ))
        } else {
            let what = match (current, link_matches) {
                (None, _) => "putting",
                (Some(_), false) => "repairing",
                (Some(_), true) => "repairing the configs of",
            };
            Status::Reconciling(format!(
                "{what} link '{}' {}:{}/{} from '{}' to '{}'",
                desired.name,
                desired.wit_namespace,
                desired.wit_package,
                desired.interfaces.join(","),
                ctx.component.name,
                target_name
            ))
        };
        Reconciled::new(commands, status)
    }

    fn cleanup(ctx: &ScalerContext, _lattice: &dyn Lattice) -> Vec<Command> {
        let Ok(properties) = ctx.properties::<LinkProperties>() else {
            // Nothing identifies what this trait made.
            return Vec::new();
        };
        let mut commands = vec![Command::DeleteLink {
            source_id: ctx.component.id.clone(),
            name: properties.link_name().to_string(),
            wit_namespace: properties.namespace.clone(),
            wit_package: properties.package.clone(),
        }];
        commands.extend(config::delete_owned(properties.configs()));
        commands
    }

    fn check(ctx: &ScalerContext) -> Vec<Diagnostic> {
        let properties = match ctx.properties::<LinkProperties>() {
            Ok(p) => p,
            Err(e) => return vec![e.to_diagnostic()],
        };
        let target_name = properties.target_name();
        if ctx.component_named(target_name).is_some() {
            return Vec::new();
        }
        let names: Vec<&str> = ctx.components.iter().map(|c| c.name.as_str()).collect();
        let path = match properties.target {
            Target::Name(_) => "target",
            Target::Full(_) => "target.name",
        };
        let hint = match trellis_sdk::suggest::closest(target_name, &names) {
            Some(near) => format!("did you mean '{near}'?"),
            None => format!("name one of the app's components: {}", names.join(", ")),
        };
        vec![Diagnostic::error(
            path,
            format!(
                "link target '{target_name}' is not a component of app '{}'",
                ctx.app
            ),
            hint,
        )]
    }
}

trellis_sdk::export_scaler!(LinkScaler);

fn names(configs: &[ConfigProperty]) -> Vec<String> {
    configs.iter().map(|c| c.name.clone()).collect()
}

/// Whether a lattice link already is the desired one (the order of interfaces does not matter).
fn same_link(current: &Link, desired: &Link) -> bool {
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v.dedup();
        v
    };
    current.same_slot(desired)
        && current.target == desired.target
        && sorted(&current.interfaces) == sorted(&desired.interfaces)
        && current.source_config == desired.source_config
        && current.target_config == desired.target_config
}

#[cfg(test)]
mod tests;
