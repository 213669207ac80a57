//! The wasm side of the SDK: bindings generated from `wit/` and the glue that turns a
//! [`Scaler`], [`Placement`] or [`Validator`] impl into its world's export. Only compiled for
//! `wasm32`.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use crate::bindings::placement::exports::trellis::plugin::placement_api;
use crate::bindings::scaler::exports::trellis::plugin::scaler_api as api;
use crate::bindings::scaler::trellis::plugin::{
    lattice as wit_lattice, placement_ranking, types as wit,
};
use crate::bindings::validator::exports::trellis::plugin::validator_api;
use crate::lattice::Lattice;
use crate::placement::{HostScore, Placement, Verdict};
use crate::scaler::{Reconciled, Scaler};
use crate::types::{
    Command, ComponentCount, ComponentInstance, ComponentKind, ComponentSpec, Diagnostic, Host,
    Labels, Link, PlacementRequest, PluginInfo, ProviderInstance, ScalerContext, Severity, Status,
};
use crate::validator::Validator;
use crate::vitals::{Health, HostVitals, Traffic};

/// The type [`export_scaler!`](crate::export_scaler) exports: implements the generated `Guest`
/// for any [`Scaler`].
pub struct ScalerExport<T>(PhantomData<T>);

impl<T: Scaler> api::Guest for ScalerExport<T> {
    fn describe() -> wit::PluginInfo {
        T::describe().into()
    }

    fn reconcile(
        ctx: api::ScalerContext,
        lattice: &wit_lattice::LatticeView,
    ) -> api::ReconcileResult {
        let Reconciled {
            commands,
            status,
            recheck_after_ms,
            memo,
        } = T::reconcile(&ctx.into(), &View(lattice, PhantomData::<Ranked>));
        api::ReconcileResult {
            commands: commands.into_iter().map(Into::into).collect(),
            status: status.into(),
            recheck_after_ms,
            memo,
        }
    }

    fn cleanup(ctx: api::ScalerContext, lattice: &wit_lattice::LatticeView) -> Vec<wit::Command> {
        T::cleanup(&ctx.into(), &View(lattice, PhantomData::<Ranked>))
            .into_iter()
            .map(Into::into)
            .collect()
    }

    fn check(ctx: api::ScalerContext) -> Vec<wit::Diagnostic> {
        T::check(&ctx.into()).into_iter().map(Into::into).collect()
    }
}

/// The type [`export_placement!`](crate::export_placement) exports.
pub struct PlacementExport<T>(PhantomData<T>);

impl<T: Placement> placement_api::Guest for PlacementExport<T> {
    fn describe() -> wit::PluginInfo {
        T::describe().into()
    }

    fn filter(
        request: wit::PlacementRequest,
        candidates: Vec<wit::HostInfo>,
        lattice: &wit_lattice::LatticeView,
    ) -> Vec<placement_api::Verdict> {
        let candidates: Vec<Host> = candidates.into_iter().map(Into::into).collect();
        T::filter(
            &request.into(),
            &candidates,
            &View(lattice, PhantomData::<Unranked>),
        )
        .into_iter()
        .map(|v: Verdict| placement_api::Verdict {
            host_id: v.host_id,
            fits: v.fits,
            reason: v.reason,
        })
        .collect()
    }

    fn score(
        request: wit::PlacementRequest,
        candidates: Vec<wit::HostInfo>,
        lattice: &wit_lattice::LatticeView,
    ) -> Vec<placement_api::HostScore> {
        let candidates: Vec<Host> = candidates.into_iter().map(Into::into).collect();
        T::score(
            &request.into(),
            &candidates,
            &View(lattice, PhantomData::<Unranked>),
        )
        .into_iter()
        .map(|s: HostScore| placement_api::HostScore {
            host_id: s.host_id,
            value: s.value,
        })
        .collect()
    }
}

/// The type [`export_validator!`](crate::export_validator) exports.
pub struct ValidatorExport<T>(PhantomData<T>);

impl<T: Validator> validator_api::Guest for ValidatorExport<T> {
    fn describe() -> wit::PluginInfo {
        T::describe().into()
    }

    fn validate(manifest: String) -> Vec<wit::Diagnostic> {
        let diagnostics = match serde_json::from_str::<serde_json::Value>(&manifest) {
            Ok(manifest) => T::validate(&manifest),
            Err(e) => vec![Diagnostic::error(
                "",
                format!("the manifest handed to the validator is not JSON: {e}"),
                "",
            )],
        };
        diagnostics.into_iter().map(Into::into).collect()
    }
}

/// Whether a [`View`] may ask for a placement ranking. Scalers import `placement-ranking`;
/// placement plugins must not (their world lacks it), so their view is built with [`Unranked`]
/// and never references the import.
trait Ranking {
    fn rank(request: &PlacementRequest) -> Vec<String>;
}

struct Ranked;
impl Ranking for Ranked {
    fn rank(request: &PlacementRequest) -> Vec<String> {
        placement_ranking::rank_hosts(&request.clone().into())
    }
}

struct Unranked;
impl Ranking for Unranked {
    fn rank(_: &PlacementRequest) -> Vec<String> {
        Vec::new()
    }
}

/// The host's `lattice-view`, borrowed for one call, plus the `placement-ranking` import.
struct View<'a, R>(&'a wit_lattice::LatticeView, PhantomData<R>);

impl<R: Ranking> Lattice for View<'_, R> {
    fn hosts(&self) -> Vec<Host> {
        self.0.hosts().into_iter().map(Into::into).collect()
    }

    fn host(&self, id: &str) -> Option<Host> {
        self.0.host(id).map(Into::into)
    }

    /// Through the packed query: three values lowered into the plugin instead of five per
    /// host (see `host-table` in `wit/plugin.wit`).
    fn hosts_by_id(&self, ids: &[String]) -> Vec<Option<Host>> {
        let table = self.0.hosts_by_id_packed(ids);
        let text = &table.text;
        table
            .hosts
            .iter()
            .map(|row| {
                let row = row.as_ref()?;
                let labels = table
                    .labels
                    .iter()
                    .skip(row.first_label as usize)
                    .take(row.label_count as usize)
                    .map(|l| (unpack(text, l.key), unpack(text, l.value)))
                    .collect();
                Some(Host {
                    id: unpack(text, row.id),
                    friendly_name: unpack(text, row.friendly_name),
                    labels,
                    uptime_seconds: row.uptime_seconds,
                })
            })
            .collect()
    }

    fn hosts_matching(&self, requirements: &Labels) -> Vec<Host> {
        self.0
            .hosts_matching(&to_pairs(requirements))
            .into_iter()
            .map(Into::into)
            .collect()
    }

    fn host_count(&self) -> u32 {
        self.0.host_count()
    }

    fn component_instances(&self, component_id: &str) -> Vec<ComponentInstance> {
        self.0
            .component_instances(component_id)
            .into_iter()
            .map(Into::into)
            .collect()
    }

    /// Through the packed query: two values lowered into the plugin instead of two per
    /// instance (see `count-table` in `wit/plugin.wit`).
    fn component_counts(&self, component_id: &str) -> Vec<ComponentCount> {
        let table = self.0.component_counts_packed(component_id);
        table
            .counts
            .iter()
            .map(|c| ComponentCount {
                host_id: unpack(&table.text, c.host_id),
                image: unpack(&table.text, c.image),
                count: c.count,
            })
            .collect()
    }

    fn provider_instances(&self, provider_id: &str) -> Vec<ProviderInstance> {
        self.0
            .provider_instances(provider_id)
            .into_iter()
            .map(Into::into)
            .collect()
    }

    fn links_from(&self, source_id: &str) -> Vec<Link> {
        self.0
            .links_from(source_id)
            .into_iter()
            .map(Into::into)
            .collect()
    }

    fn config(&self, name: &str) -> Option<Labels> {
        self.0.config(name).map(from_pairs)
    }

    fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }

    fn instance_counts(&self, component_id: Option<&str>) -> BTreeMap<String, u32> {
        self.0
            .instance_counts(component_id)
            .into_iter()
            .map(|c| (c.host_id, c.count))
            .collect()
    }

    fn rank_hosts(&self, request: &PlacementRequest) -> Vec<String> {
        R::rank(request)
    }

    fn host_vitals(&self, ids: &[String]) -> Vec<Option<HostVitals>> {
        self.0
            .host_vitals(ids)
            .into_iter()
            .map(|v| {
                v.map(|v| HostVitals {
                    host_id: v.host_id,
                    health: match v.health {
                        wit::Health::Healthy => Health::Healthy,
                        wit::Health::Suspect => Health::Suspect,
                    },
                    reported: v.reported,
                    cpus: v.cpus,
                    cpu_use: v.cpu_use,
                    process_cpu_use: v.process_cpu_use,
                    memory_total_bytes: v.memory_total_bytes,
                    memory_available_bytes: v.memory_available_bytes,
                    instances: v.instances,
                })
            })
            .collect()
    }

    fn component_traffic(&self, component_id: &str) -> Vec<Traffic> {
        self.0
            .component_traffic(component_id)
            .into_iter()
            .map(|t| Traffic {
                host_id: t.host_id,
                in_flight: t.in_flight,
                requests_per_second: t.requests_per_second,
                p50_ms: t.p50_ms,
                p99_ms: t.p99_ms,
                error_rate: t.error_rate,
                window_seconds: t.window_seconds,
            })
            .collect()
    }
}

/// The string at `span` of a packed answer's text. The runtime builds the spans from the text
/// itself; a span out of range or off a character boundary (a runtime bug) reads as empty
/// rather than trapping the plugin.
fn unpack(text: &str, span: wit::Span) -> String {
    let start = span.start as usize;
    start
        .checked_add(span.len as usize)
        .and_then(|end| text.get(start..end))
        .unwrap_or_default()
        .to_string()
}

fn to_pairs(labels: &Labels) -> Vec<wit::Pair> {
    labels
        .iter()
        .map(|(key, value)| wit::Pair {
            key: key.clone(),
            value: value.clone(),
        })
        .collect()
}

fn from_pairs(pairs: Vec<wit::Pair>) -> Labels {
    pairs.into_iter().map(|p| (p.key, p.value)).collect()
}

impl From<wit::HostInfo> for Host {
    fn from(h: wit::HostInfo) -> Self {
        Self {
            id: h.id,
            friendly_name: h.friendly_name,
            labels: from_pairs(h.labels),
            uptime_seconds: h.uptime_seconds,
        }
    }
}

impl From<wit::ComponentInstance> for ComponentInstance {
    fn from(i: wit::ComponentInstance) -> Self {
        Self {
            host_id: i.host_id,
            component_id: i.component_id,
            image: i.image,
            count: i.count,
            annotations: from_pairs(i.annotations),
        }
    }
}

impl From<wit::ProviderInstance> for ProviderInstance {
    fn from(i: wit::ProviderInstance) -> Self {
        Self {
            host_id: i.host_id,
            provider_id: i.provider_id,
            image: i.image,
            annotations: from_pairs(i.annotations),
        }
    }
}

impl From<wit::Link> for Link {
    fn from(l: wit::Link) -> Self {
        Self {
            source_id: l.source_id,
            target: l.target,
            name: l.name,
            wit_namespace: l.wit_namespace,
            wit_package: l.wit_package,
            interfaces: l.interfaces,
            source_config: l.source_config,
            target_config: l.target_config,
        }
    }
}

impl From<Link> for wit::Link {
    fn from(l: Link) -> Self {
        Self {
            source_id: l.source_id,
            target: l.target,
            name: l.name,
            wit_namespace: l.wit_namespace,
            wit_package: l.wit_package,
            interfaces: l.interfaces,
            source_config: l.source_config,
            target_config: l.target_config,
        }
    }
}

impl From<Command> for wit::Command {
    fn from(c: Command) -> Self {
        match c {
            Command::ScaleComponent {
                host_id,
                component_id,
                image,
                count,
                config,
            } => Self::ScaleComponent(wit::ScaleComponent {
                host_id,
                component_id,
                image,
                count,
                config,
            }),
            Command::StartProvider {
                host_id,
                provider_id,
                image,
                config,
            } => Self::StartProvider(wit::StartProvider {
                host_id,
                provider_id,
                image,
                config,
            }),
            Command::StopProvider {
                host_id,
                provider_id,
            } => Self::StopProvider(wit::StopProvider {
                host_id,
                provider_id,
            }),
            Command::PutLink(link) => Self::PutLink(link.into()),
            Command::DeleteLink {
                source_id,
                name,
                wit_namespace,
                wit_package,
            } => Self::DeleteLink(wit::DeleteLink {
                source_id,
                name,
                wit_namespace,
                wit_package,
            }),
            Command::PutConfig { name, entries } => Self::PutConfig(wit::PutConfig {
                name,
                entries: to_pairs(&entries),
            }),
            Command::DeleteConfig(name) => Self::DeleteConfig(name),
        }
    }
}

impl From<Status> for wit::Status {
    fn from(s: Status) -> Self {
        match s {
            Status::Deployed => Self::Deployed,
            Status::Reconciling(why) => Self::Reconciling(why),
            Status::Failed(why) => Self::Failed(why),
            Status::Waiting(why) => Self::Waiting(why),
        }
    }
}

impl From<PluginInfo> for wit::PluginInfo {
    fn from(p: PluginInfo) -> Self {
        Self {
            name: p.name,
            version: p.version,
            trait_types: p.trait_types,
            description: p.description,
        }
    }
}

impl From<wit::ComponentKind> for ComponentKind {
    fn from(k: wit::ComponentKind) -> Self {
        match k {
            wit::ComponentKind::Component => Self::Component,
            wit::ComponentKind::Provider => Self::Provider,
        }
    }
}

impl From<wit::ComponentSpec> for ComponentSpec {
    fn from(c: wit::ComponentSpec) -> Self {
        Self {
            name: c.name,
            kind: c.kind.into(),
            image: c.image,
            id: c.id,
            config: c.config,
        }
    }
}

impl From<api::ScalerContext> for ScalerContext {
    fn from(c: api::ScalerContext) -> Self {
        Self {
            app: c.app,
            version: c.version,
            component: c.component.into(),
            components: c.components.into_iter().map(Into::into).collect(),
            trait_type: c.trait_type,
            properties: c.properties,
            memo: c.memo,
        }
    }
}

impl From<PlacementRequest> for wit::PlacementRequest {
    fn from(r: PlacementRequest) -> Self {
        Self {
            component_id: r.component_id,
            requirements: to_pairs(&r.requirements),
        }
    }
}

impl From<wit::PlacementRequest> for PlacementRequest {
    fn from(r: wit::PlacementRequest) -> Self {
        Self {
            component_id: r.component_id,
            requirements: from_pairs(r.requirements),
        }
    }
}

impl From<Diagnostic> for wit::Diagnostic {
    fn from(d: Diagnostic) -> Self {
        Self {
            severity: match d.severity {
                Severity::Error => wit::Severity::Error,
                Severity::Warning => wit::Severity::Warning,
                Severity::Info => wit::Severity::Info,
            },
            path: d.path,
            message: d.message,
            hint: d.hint,
        }
    }
}
