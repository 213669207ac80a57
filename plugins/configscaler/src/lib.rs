//! The built-in `config` scaler: keeps the named configs a component lists in its
//! `properties.config` in place. The controller applies it to every component that lists
//! configs (the manifest writes no trait for it, as in wadm).
//!
//! A config with `properties` belongs to the app: it is put when missing, put again when it
//! drifts (changed behind trellis's back), and deleted on undeploy. A config without
//! `properties` belongs to someone else: the scaler only reports when it is missing.

use serde::Deserialize;
use trellis_sdk::config::{self, ConfigProperty};
use trellis_sdk::{
    Command, Diagnostic, Lattice, PluginInfo, Reconciled, Scaler, ScalerContext, Status,
};

/// The trait type the controller gives the configs of a component.
pub const TRAIT_TYPE: &str = "config";

/// The properties the controller hands over: the component's `properties.config` list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigProperties {
    #[serde(default)]
    pub config: Vec<ConfigProperty>,
}

pub struct ConfigScaler;

impl Scaler for ConfigScaler {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "configscaler".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            trait_types: vec![TRAIT_TYPE.into()],
            description: "Puts a component's managed configs, repairs their drift and reports \
                          missing external ones"
                .into(),
        }
    }

    fn reconcile(ctx: &ScalerContext, lattice: &dyn Lattice) -> Reconciled {
        let properties = match ctx.properties::<ConfigProperties>() {
            Ok(p) => p,
            Err(e) => return Reconciled::failed(e.to_string()),
        };
        let state = config::converge_configs(&properties.config, lattice);
        let status = if !state.missing_external.is_empty() {
            Status::Waiting(format!(
                "{}: component '{}' names it without properties, so it must be put on the \
                 lattice by its owner, or given properties in the manifest",
                config::describe_missing(&state.missing_external),
                ctx.component.name
            ))
        } else if !state.created.is_empty() {
            Status::Reconciling(format!("putting config {}", quoted(&state.created)))
        } else if !state.drifted.is_empty() {
            Status::Reconciling(format!(
                "repairing config {} (changed outside the manifest)",
                quoted(&state.drifted)
            ))
        } else {
            Status::Deployed
        };
        Reconciled::new(state.commands, status)
    }

    fn cleanup(ctx: &ScalerContext, _lattice: &dyn Lattice) -> Vec<Command> {
        match ctx.properties::<ConfigProperties>() {
            Ok(properties) => config::delete_owned(&properties.config),
            Err(_) => Vec::new(),
        }
    }

    fn check(ctx: &ScalerContext) -> Vec<Diagnostic> {
        ctx.check_properties::<ConfigProperties>()
    }
}

trellis_sdk::export_scaler!(ConfigScaler);

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use trellis_sdk::label_map;
    use trellis_sdk::testing::{scaler_context, TestLattice};

    use super::*;

    const PROPS: &str = r#"{"config": [
        {"name": "web-settings", "properties": {"greeting": "hello", "port": 8080}},
        {"name": "shared-secrets"}]}"#;

    fn ctx(properties: &str) -> ScalerContext {
        scaler_context(TRAIT_TYPE, properties)
    }

    fn put(entries: &[(&str, &str)]) -> Command {
        Command::PutConfig {
            name: "web-settings".into(),
            entries: label_map(entries),
        }
    }

    const WANTED: &[(&str, &str)] = &[("greeting", "hello"), ("port", "8080")];

    #[test]
    fn puts_managed_config_and_waits_for_external() {
        let result = ConfigScaler::reconcile(&ctx(PROPS), &TestLattice::new());
        assert_eq!(result.commands, [put(WANTED)]);
        let Status::Waiting(why) = result.status else {
            panic!("{result:?}");
        };
        assert!(
            why.contains("config 'shared-secrets' does not exist"),
            "{why}"
        );
    }

    #[test]
    fn in_place_is_deployed() {
        let lattice = TestLattice::new()
            .with_config("web-settings", WANTED)
            .with_config("shared-secrets", &[("token", "x")]);
        assert_eq!(
            ConfigScaler::reconcile(&ctx(PROPS), &lattice),
            Reconciled::deployed()
        );
    }

    #[test]
    fn drift_is_repaired_and_external_changes_are_not_ours() {
        let lattice = TestLattice::new()
            .with_config("web-settings", &[("greeting", "hacked")])
            .with_config("shared-secrets", &[("token", "changed by its owner")]);
        let result = ConfigScaler::reconcile(&ctx(PROPS), &lattice);
        assert_eq!(result.commands, [put(WANTED)]);
        let Status::Reconciling(why) = result.status else {
            panic!("{result:?}");
        };
        assert!(why.contains("repairing config 'web-settings'"), "{why}");
    }

    #[test]
    fn cleanup_deletes_only_managed_configs() {
        assert_eq!(
            ConfigScaler::cleanup(&ctx(PROPS), &TestLattice::new()),
            [Command::DeleteConfig("web-settings".into())]
        );
    }

    #[test]
    fn bad_properties_are_checked() {
        let bad = r#"{"config": [{"name": "x", "properties": {"k": [1]}}]}"#;
        assert_eq!(
            ConfigScaler::check(&ctx(bad))[0].path,
            "config[0].properties.k"
        );
        assert!(ConfigScaler::check(&ctx(PROPS)).is_empty());
    }
}
