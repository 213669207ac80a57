//! The pure planning of one app: its scalers ([`scaler_slots`], one per trait, plus the
//! implicit config scaler), what their plugins decide on a snapshot ([`plan_app`]), which
//! scalers a new version or an undeploy leaves to clean up ([`cleanup_after`]) and what
//! cleaning them up issues ([`cleanup_scalers`]). No I/O: a pass, the `plan` query
//! ([`plan_response`]) and validation all call these, so a plan and a pass decide alike.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use trellis_lattice::api::{
    GetResult, PlanResponse, PlannedCommand, ScalerStatus, StatusInfo, StatusType,
};
use trellis_lattice::ctl;
use trellis_lattice::manifest::ComponentType;
use trellis_lattice::Manifest;
use trellis_runtime::bindings::{
    Command, ComponentKind, ComponentSpec, ScalerContext, Status as PluginStatus,
};
use trellis_runtime::{LatticeSnapshot, Runtime};

use super::scope::AppScope;
use crate::commands::{encode, Origin};

/// One scaler of a deployed app: a trait on a component. Its plugin context is built only
/// when the plugin is called ([`Scalers::context`]), so the slots of a manifest cost its size.
pub(crate) struct ScalerSlot {
    pub origin: Origin,
    pub status_id: String,
    /// What the scaler is, whatever the component is called ([`ScalerKey`]).
    pub key: ScalerKey,
    pub trait_type: String,
    pub component: String,
    /// Where the scaler's properties are in the manifest, for diagnostics.
    pub properties_path: String,
    properties: String,
    /// The component the trait is on, and the others its properties name (link targets), as
    /// indices into [`Scalers::specs`].
    own: usize,
    named: Vec<usize>,
}

/// A scaler's identity from one version of an app to the next: its trait type, the id of the
/// component it is on, and which of that component's traits of the type it is: for a link,
/// the link itself (`namespace:package/name`), for others its place among them. Not its
/// status id, which holds the component's *name*: a version that renames a component but
/// keeps its id (as a rollout does, see `crate::rollout`) keeps its scalers, so nothing is
/// cleaned up and started again.
pub(crate) type ScalerKey = (String, String, String);

/// The scalers of one manifest, with the component specs their contexts draw on.
pub(crate) struct Scalers {
    app: String,
    version: String,
    specs: Vec<ComponentSpec>,
    pub slots: Vec<ScalerSlot>,
}

/// Up to this many components, a scaler's context lists every component of its app (the
/// contract's `components`); past it, only its own and those its properties name. Listing
/// all of them in every call would make a pass over an app quadratic in its size: 10,000
/// components would lower 10⁸ specs into plugins (docs/benchmarks.md, manifest size).
pub const CONTEXT_COMPONENTS_MAX: usize = 256;

impl Scalers {
    /// What the plugin of `slot` is called with.
    pub fn context(&self, slot: &ScalerSlot, memo: Option<String>) -> ScalerContext {
        let components = if self.specs.len() <= CONTEXT_COMPONENTS_MAX {
            self.specs.clone()
        } else {
            std::iter::once(slot.own)
                .chain(slot.named.iter().copied().filter(|&i| i != slot.own))
                .map(|i| self.specs[i].clone())
                .collect()
        };
        ScalerContext {
            app: self.app.clone(),
            version: self.version.clone(),
            component: self.specs[slot.own].clone(),
            components,
            trait_type: slot.trait_type.clone(),
            properties: slot.properties.clone(),
            memo,
        }
    }
}

/// What each scaler returned as its memo, by app and scaler (status id): handed back on its
/// next call. In memory only (see `scaler-context.memo` in wit/plugin.wit).
pub type Memos = HashMap<(String, String), String>;

/// The components whose names appear as string values anywhere in `properties`: what a
/// trait refers to (a link's target, a shared component).
fn named_components(properties: &serde_json::Value, index: &HashMap<&str, usize>) -> Vec<usize> {
    let mut found = Vec::new();
    let mut stack = vec![properties];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::String(s) => {
                if let Some(&i) = index.get(s.as_str()) {
                    if !found.contains(&i) {
                        found.push(i);
                    }
                }
            }
            serde_json::Value::Array(items) => stack.extend(items),
            serde_json::Value::Object(map) => stack.extend(map.values()),
            _ => {}
        }
    }
    found
}

/// `namespace:package/name` of a `link` trait: what tells two links from one source apart.
fn link_identity(trait_type: &str, properties: &serde_json::Value) -> Option<String> {
    if trait_type != "link" {
        return None;
    }
    let text = |key: &str| properties.get(key).and_then(|v| v.as_str());
    Some(format!(
        "{}:{}/{}",
        text("namespace")?,
        text("package")?,
        text("name").unwrap_or("default")
    ))
}

/// The trait type of the scaler the controller gives every component that lists configs in
/// its properties (the manifest writes no trait for it, as in wadm).
pub(crate) const CONFIG_TRAIT: &str = "config";

/// What one scaler decided in one pass.
pub struct Planned {
    pub origin: Origin,
    pub status_id: String,
    pub trait_type: String,
    pub component: String,
    pub commands: Vec<Command>,
    pub status: StatusInfo,
    /// The scaler asked to be called again after this long, even if nothing changes.
    pub recheck_after: Option<std::time::Duration>,
    /// What the scaler asked to get back on its next call.
    pub memo: Option<String>,
}

fn component_specs(manifest: &Manifest) -> Vec<ComponentSpec> {
    manifest
        .spec
        .components
        .iter()
        .map(|c| ComponentSpec {
            name: c.name.clone(),
            kind: match c.component_type {
                ComponentType::Component => ComponentKind::Component,
                ComponentType::Capability => ComponentKind::Provider,
            },
            image: c.properties.image.clone().unwrap_or_default(),
            id: manifest.component_id(c),
            config: c.properties.config.iter().map(|c| c.name.clone()).collect(),
        })
        .collect()
}

pub(crate) fn scaler_slots(manifest: &Manifest) -> Scalers {
    let specs = component_specs(manifest);
    let index: HashMap<&str, usize> = manifest
        .spec
        .components
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    let mut slots = Vec::new();
    for (ci, component) in manifest.spec.components.iter().enumerate() {
        // Each trait type's count so far on this component: the next one's place.
        let mut ordinals: HashMap<String, usize> = HashMap::new();
        let mut key = |trait_type: &str, properties: &serde_json::Value| -> ScalerKey {
            let which = match link_identity(trait_type, properties) {
                Some(link) => link,
                None => {
                    let n = ordinals.entry(trait_type.to_string()).or_default();
                    *n += 1;
                    (*n - 1).to_string()
                }
            };
            (trait_type.to_string(), specs[ci].id.clone(), which)
        };
        let slot = |status_id: String,
                    key: ScalerKey,
                    trait_type: &str,
                    properties: &serde_json::Value,
                    path: String| ScalerSlot {
            origin: Origin {
                app: manifest.name().to_string(),
                scaler: status_id.clone(),
            },
            status_id,
            key,
            trait_type: trait_type.to_string(),
            component: component.name.clone(),
            properties_path: path,
            properties: properties.to_string(),
            own: ci,
            named: named_components(properties, &index),
        };
        if !component.properties.config.is_empty() {
            let properties = serde_json::json!({ "config": component.properties.config });
            slots.push(slot(
                format!("{CONFIG_TRAIT}-{}", component.name),
                key(CONFIG_TRAIT, &serde_json::Value::Null),
                CONFIG_TRAIT,
                &properties,
                format!("spec.components[{ci}].properties"),
            ));
        }
        for (ti, t) in component.traits.iter().flatten().enumerate() {
            slots.push(slot(
                format!("{}-{}-{ti}", t.trait_type, component.name),
                key(&t.trait_type, &t.properties),
                &t.trait_type,
                &t.properties,
                format!("spec.components[{ci}].traits[{ti}].properties"),
            ));
        }
    }
    Scalers {
        app: manifest.name().to_string(),
        version: manifest.version().to_string(),
        specs,
        slots,
    }
}

pub fn plan_app(
    runtime: &Runtime,
    manifest: &Manifest,
    snapshot: &Arc<LatticeSnapshot>,
    memos: &Memos,
) -> Vec<Planned> {
    let plugins = runtime.plugins();
    let scalers = scaler_slots(manifest);
    let scope = AppScope::of(manifest);
    // The app's rankings use the always-on placement plugins and the policy it names (or the
    // default policy); an unknown policy fails every scaler of the app, saying why.
    let placements = plugins.placements_for(manifest.placement_policy());
    scalers
        .slots
        .iter()
        .map(|slot| {
            let mut recheck_after = None;
            let mut memo = None;
            let (commands, status) = match (plugins.scaler_for(&slot.trait_type), &placements) {
                (None, _) => {
                    let loaded = plugins.trait_types();
                    let loaded = if loaded.is_empty() {
                        "none".to_string()
                    } else {
                        loaded.join(", ")
                    };
                    (
                        Vec::new(),
                        StatusInfo::new(
                            StatusType::Failed,
                            format!(
                                "no plugin handles trait type `{}` (loaded plugins handle: {loaded}); put a plugin for it in {}",
                                slot.trait_type,
                                runtime.plugin_dir().display()
                            ),
                        ),
                    )
                }
                (Some(_), Err(why)) => (Vec::new(), StatusInfo::new(StatusType::Failed, why.clone())),
                (Some(plugin), Ok(placements)) => {
                    let span = tracing::debug_span!("scaler", scaler = %slot.status_id, plugin = plugin.name());
                    let _guard = span.enter();
                    let key = (scalers.app.clone(), slot.status_id.clone());
                    let ctx = scalers.context(slot, memos.get(&key).cloned());
                    match plugin.reconcile(&ctx, snapshot, placements.clone()) {
                        Ok(result) => match scope.check(&result.commands) {
                            Ok(()) => {
                                recheck_after = result
                                    .recheck_after_ms
                                    .map(|ms| std::time::Duration::from_millis(ms.into()));
                                memo = result.memo;
                                (result.commands, plugin_status(result.status))
                            }
                            Err(why) => {
                                tracing::warn!(plugin = plugin.name(), "{why}");
                                (Vec::new(), StatusInfo::new(StatusType::Failed, why))
                            }
                        },
                        Err(e) => (Vec::new(), StatusInfo::new(StatusType::Failed, e.to_string())),
                    }
                }
            };
            Planned {
                origin: slot.origin.clone(),
                status_id: slot.status_id.clone(),
                trait_type: slot.trait_type.clone(),
                component: slot.component.clone(),
                commands,
                status,
                recheck_after,
                memo,
            }
        })
        .collect()
}

/// What deploying `manifest` into lattice `lattice` would issue first on `snapshot`: the `plan`
/// of a version with nothing deployed before it, no memo and nothing in flight. The same calls
/// as a pass, without a controller: `trellis plugin run` replays a lattice's state through it.
pub fn plan_fresh(
    runtime: &Runtime,
    manifest: &Manifest,
    snapshot: &Arc<LatticeSnapshot>,
    lattice: &str,
) -> PlanResponse {
    let scalers = plan_app(runtime, manifest, snapshot, &Memos::default());
    plan_response(
        manifest.name().to_string(),
        manifest.version().to_string(),
        &scalers,
        &[],
        &ctl::Subjects::new(lattice),
        |_| false,
    )
}

/// Scalers to clean up: `scalers` of `manifest`, a version of `app` that ran.
pub(crate) struct Cleanup {
    pub app: String,
    pub manifest: Manifest,
    pub scalers: BTreeSet<ScalerKey>,
}

/// The keys of every scaler of a manifest.
pub(crate) fn scaler_keys(manifest: &Manifest) -> BTreeSet<ScalerKey> {
    scaler_slots(manifest)
        .slots
        .into_iter()
        .map(|s| s.key)
        .collect()
}

/// What replacing `previous`, a version of `app` that ran, by `next` leaves to clean up: the
/// scalers `previous` has and `next` drops (all of them when `next` is `None`: an undeploy).
pub(crate) fn cleanup_after(
    app: &str,
    previous: Manifest,
    next: Option<&Manifest>,
) -> Option<Cleanup> {
    let kept = next.map(scaler_keys).unwrap_or_default();
    let gone: BTreeSet<ScalerKey> = scaler_keys(&previous)
        .into_iter()
        .filter(|id| !kept.contains(id))
        .collect();
    (!gone.is_empty()).then(|| Cleanup {
        app: app.to_string(),
        manifest: previous,
        scalers: gone,
    })
}

pub(crate) fn cleanup_scalers(
    runtime: &Runtime,
    cleanup: &Cleanup,
    snapshot: &Arc<LatticeSnapshot>,
) -> Vec<(Origin, Vec<Command>)> {
    let plugins = runtime.plugins();
    let scalers = scaler_slots(&cleanup.manifest);
    let scope = AppScope::of(&cleanup.manifest);
    scalers
        .slots
        .iter()
        .filter(|slot| cleanup.scalers.contains(&slot.key))
        .filter_map(|slot| {
            let plugin = plugins.scaler_for(&slot.trait_type)?;
            let outcome = plugin
                .cleanup(&scalers.context(slot, None), snapshot)
                .map_err(|e| e.to_string())
                .and_then(|commands| scope.check(&commands).map(|()| commands));
            match outcome {
                Ok(commands) => Some((slot.origin.clone(), commands)),
                Err(e) => {
                    tracing::error!(app = %slot.origin.app, scaler = %slot.status_id, "cleanup failed: {e}");
                    None
                }
            }
        })
        .collect()
}

/// The answer to a `plan` query: what `scalers` and `cleanups` decided, with each command as
/// the request that would carry it; `held` says which the executor would hold back now.
pub(crate) fn plan_response(
    name: String,
    version: String,
    scalers: &[Planned],
    cleanups: &[(Origin, Vec<Command>)],
    subjects: &ctl::Subjects,
    held: impl Fn(&Command) -> bool,
) -> PlanResponse {
    let mut commands = Vec::new();
    let mut add = |origin: &Origin, command: &Command| {
        let (subject, body) = encode(subjects, command, origin);
        commands.push(PlannedCommand {
            scaler: origin.scaler.clone(),
            subject,
            body: serde_json::from_slice(&body).unwrap_or_default(),
            held: held(command),
        });
    };
    let mut statuses = Vec::new();
    for planned in scalers {
        for c in &planned.commands {
            add(&planned.origin, c);
        }
        statuses.push(ScalerStatus {
            id: planned.status_id.clone(),
            kind: planned.trait_type.clone(),
            name: planned.component.clone(),
            info: planned.status.clone(),
        });
    }
    for (origin, cmds) in cleanups {
        for c in cmds {
            add(origin, c);
        }
    }
    PlanResponse {
        result: GetResult::Success,
        code: None,
        message: format!(
            "deploying {name} {version} would issue {} command(s) now",
            commands.iter().filter(|c| !c.held).count()
        ),
        name,
        version,
        commands,
        scalers: statuses,
    }
}

fn plugin_status(status: PluginStatus) -> StatusInfo {
    match status {
        PluginStatus::Deployed => StatusInfo::new(StatusType::Deployed, ""),
        PluginStatus::Reconciling(m) => StatusInfo::new(StatusType::Reconciling, m),
        PluginStatus::Failed(m) => StatusInfo::new(StatusType::Failed, m),
        PluginStatus::Waiting(m) => StatusInfo::new(StatusType::Waiting, m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` components; the first links to `c5`.
    fn manifest(n: usize) -> Manifest {
        let mut text = String::from(
            "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: big\n  \
             annotations:\n    version: v1\nspec:\n  components:\n",
        );
        for i in 0..n {
            text.push_str(&format!(
                "    - name: c{i}\n      type: component\n      properties: {{image: f}}\n      \
                 traits:\n        - {{type: spreadscaler, properties: {{instances: 1}}}}\n"
            ));
            if i == 0 {
                text.push_str(
                    "        - {type: link, properties: {target: {name: c5}, namespace: wasi}}\n",
                );
            }
        }
        Manifest::parse(&text).unwrap()
    }

    fn names(ctx: &ScalerContext) -> Vec<&str> {
        ctx.components.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn a_small_app_gives_every_scaler_every_component() {
        let scalers = scaler_slots(&manifest(10));
        assert_eq!(scalers.slots.len(), 11);
        for slot in &scalers.slots {
            assert_eq!(scalers.context(slot, None).components.len(), 10);
        }
    }

    #[test]
    fn a_large_app_gives_a_scaler_its_component_and_those_it_names() {
        let scalers = scaler_slots(&manifest(CONTEXT_COMPONENTS_MAX + 1));
        let link = scalers
            .slots
            .iter()
            .find(|s| s.trait_type == "link")
            .unwrap();
        let ctx = scalers.context(link, None);
        assert_eq!(ctx.component.name, "c0");
        assert_eq!(names(&ctx), ["c0", "c5"]);
        let spread = &scalers.slots[5 + 1]; // c5's spreadscaler (c0 has two traits)
        assert_eq!(names(&scalers.context(spread, None)), ["c5"]);
    }
}
