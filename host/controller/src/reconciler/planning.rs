//! The pure planning of one app: its scalers ([`scaler_slots`], one per trait, plus the
//! implicit config scaler), what their plugins decide on a snapshot ([`plan_app`]), which
//! scalers a new version or an undeploy leaves to clean up ([`cleanup_after`]) and what
//! cleaning them up issues ([`cleanup_scalers`]). No I/O: a pass, the `plan` query
//! ([`plan_response`]) and validation all call these, so a plan and a pass decide alike.

use std::collections::BTreeSet;
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

use crate::commands::{encode, Origin};

/// One scaler of a deployed app: a trait on a component.
pub(crate) struct ScalerSlot {
    pub origin: Origin,
    pub status_id: String,
    pub trait_type: String,
    pub component: String,
    pub ctx: ScalerContext,
    /// Where the scaler's properties are in the manifest, for diagnostics.
    pub properties_path: String,
}

/// The trait type of the scaler the controller gives every component that lists configs in
/// its properties (the manifest writes no trait for it, as in wadm).
pub(crate) const CONFIG_TRAIT: &str = "config";

/// What one scaler decided in one pass.
pub(crate) struct Planned {
    pub origin: Origin,
    pub status_id: String,
    pub trait_type: String,
    pub component: String,
    pub commands: Vec<Command>,
    pub status: StatusInfo,
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

pub(crate) fn scaler_slots(manifest: &Manifest) -> Vec<ScalerSlot> {
    let specs = component_specs(manifest);
    let mut slots = Vec::new();
    for (ci, (component, spec)) in manifest.spec.components.iter().zip(&specs).enumerate() {
        let slot =
            |status_id: String, trait_type: &str, properties: String, path: String| ScalerSlot {
                origin: Origin {
                    app: manifest.name().to_string(),
                    scaler: status_id.clone(),
                },
                status_id,
                trait_type: trait_type.to_string(),
                component: component.name.clone(),
                ctx: ScalerContext {
                    app: manifest.name().to_string(),
                    version: manifest.version().to_string(),
                    component: spec.clone(),
                    components: specs.clone(),
                    trait_type: trait_type.to_string(),
                    properties,
                },
                properties_path: path,
            };
        if !component.properties.config.is_empty() {
            let properties = serde_json::json!({ "config": component.properties.config });
            slots.push(slot(
                format!("{CONFIG_TRAIT}-{}", component.name),
                CONFIG_TRAIT,
                properties.to_string(),
                format!("spec.components[{ci}].properties"),
            ));
        }
        for (ti, t) in component.traits.iter().flatten().enumerate() {
            slots.push(slot(
                format!("{}-{}-{ti}", t.trait_type, component.name),
                &t.trait_type,
                t.properties.to_string(),
                format!("spec.components[{ci}].traits[{ti}].properties"),
            ));
        }
    }
    slots
}

pub(crate) fn plan_app(
    runtime: &Runtime,
    manifest: &Manifest,
    snapshot: &Arc<LatticeSnapshot>,
) -> Vec<Planned> {
    let plugins = runtime.plugins();
    scaler_slots(manifest)
        .into_iter()
        .map(|slot| {
            let (commands, status) = match plugins.scaler_for(&slot.trait_type) {
                None => {
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
                Some(plugin) => {
                    let span = tracing::debug_span!("scaler", scaler = %slot.status_id, plugin = plugin.name());
                    let _guard = span.enter();
                    match plugin.reconcile(&slot.ctx, snapshot, plugins.placements.clone()) {
                        Ok(result) => (result.commands, plugin_status(result.status)),
                        Err(e) => (Vec::new(), StatusInfo::new(StatusType::Failed, e.to_string())),
                    }
                }
            };
            Planned {
                origin: slot.origin,
                status_id: slot.status_id,
                trait_type: slot.trait_type,
                component: slot.component,
                commands,
                status,
            }
        })
        .collect()
}

/// Scalers to clean up: `scalers` (by status id) of `manifest`, a version of `app` that ran.
pub(crate) struct Cleanup {
    pub app: String,
    pub manifest: Manifest,
    pub scalers: BTreeSet<String>,
}

/// The status ids of every scaler of a manifest.
pub(crate) fn scaler_ids(manifest: &Manifest) -> BTreeSet<String> {
    scaler_slots(manifest)
        .into_iter()
        .map(|s| s.status_id)
        .collect()
}

/// What replacing `previous`, a version of `app` that ran, by `next` leaves to clean up: the
/// scalers `previous` has and `next` drops (all of them when `next` is `None`: an undeploy).
pub(crate) fn cleanup_after(
    app: &str,
    previous: Manifest,
    next: Option<&Manifest>,
) -> Option<Cleanup> {
    let kept = next.map(scaler_ids).unwrap_or_default();
    let gone: BTreeSet<String> = scaler_ids(&previous)
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
    scaler_slots(&cleanup.manifest)
        .into_iter()
        .filter(|slot| cleanup.scalers.contains(&slot.status_id))
        .filter_map(|slot| {
            let plugin = plugins.scaler_for(&slot.trait_type)?;
            match plugin.cleanup(&slot.ctx, snapshot) {
                Ok(commands) => Some((slot.origin, commands)),
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
