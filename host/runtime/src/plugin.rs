//! One loaded plugin: its compiled component, what it said about itself, its limits and its
//! call statistics. Calling it always instantiates afresh, so no state survives a call.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use wasmtime::component::{
    Component, ComponentExportIndex, ComponentNamedList, InstancePre, Lift, Linker, Lower,
    TypedFunc,
};
use wasmtime::{Engine, Store};

use crate::bindings::placement::exports::trellis::plugin::placement_api::{HostScore, Verdict};
use crate::bindings::rollout::exports::trellis::plugin::rollout_api::{
    RolloutContext, RolloutDecision,
};
use crate::bindings::{placement, rollout, scaler, v0_1, validator};
use crate::bindings::{
    Command, Diagnostic, HostInfo, PlacementRequest, PluginInfo, ReconcileResult, ScalerContext,
};
use crate::compat;
use crate::error::{CallError, Fault, LoadError};
use crate::output;
use crate::placement::Placements;
use crate::sandbox::{self, Limits, State};
use crate::snapshot::LatticeSnapshot;

/// The contract version this runtime implements.
pub const CONTRACT_VERSION: &str = "0.2.0";

/// The contract versions whose plugins this runtime loads: this one and 0.1.0.
pub const CONTRACT_VERSIONS: &str = "0.1.x and 0.2.x";

/// Which contract a plugin was built against (from the version of its exports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Contract {
    #[serde(rename = "0.1")]
    V0_1,
    #[serde(rename = "0.2")]
    V0_2,
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Contract::V0_1 => "0.1",
            Contract::V0_2 => "0.2",
        })
    }
}

/// How many recent call latencies are kept for percentiles.
const LATENCY_WINDOW: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    Scaler,
    Placement,
    Validator,
    Rollout,
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::Scaler => "scaler",
            PluginKind::Placement => "placement",
            PluginKind::Validator => "validator",
            PluginKind::Rollout => "rollout",
        })
    }
}

/// Calls, failures and latencies of one plugin.
#[derive(Debug, Default)]
struct Stats {
    calls: u64,
    failures: BTreeMap<&'static str, u64>,
    latencies_us: VecDeque<u64>,
}

/// A summary of a plugin for `trellis plugin list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginSummary {
    pub name: String,
    pub version: String,
    pub kind: PluginKind,
    pub file: PathBuf,
    pub sha256: String,
    pub trait_types: Vec<String>,
    pub description: String,
    /// The contract version the plugin was built against.
    pub contract: Contract,
    pub calls: u64,
    pub failures: BTreeMap<String, u64>,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
}

pub struct Plugin {
    pub file: PathBuf,
    pub sha256: String,
    pub kind: PluginKind,
    pub contract: Contract,
    pub info: PluginInfo,
    pub limits: Limits,
    name: Arc<str>,
    engine: Engine,
    /// Checked at load against the world of the plugin's kind and contract.
    pre: InstancePre<State>,
    /// Where each function of the plugin's API interface is, found once at load.
    exports: BTreeMap<&'static str, Export>,
    stats: Mutex<Stats>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("file", &self.file)
            .field("kind", &self.kind)
            .field("name", &self.info.name)
            .finish()
    }
}

pub(crate) struct Linkers {
    pub scaler: Linker<State>,
    pub placement: Linker<State>,
    pub validator: Linker<State>,
    pub rollout: Linker<State>,
}

/// Which world a component exports, and for which contract, from its export names; refuses
/// other contract versions.
fn detect_kind(
    file: &Path,
    component: &Component,
    engine: &Engine,
) -> Result<(PluginKind, Contract), LoadError> {
    let mut names = Vec::new();
    for (name, _) in component.component_type().exports(engine) {
        names.push(name.to_string());
        let Some(rest) = name.strip_prefix("trellis:plugin/") else {
            continue;
        };
        let (interface, version) = rest.split_once('@').unwrap_or((rest, "unversioned"));
        let kind = match interface {
            "scaler-api" => PluginKind::Scaler,
            "placement-api" => PluginKind::Placement,
            "validator-api" => PluginKind::Validator,
            "rollout-api" => PluginKind::Rollout,
            _ => continue,
        };
        let contract = match semver::Version::parse(version) {
            Ok(v) if v.major == 0 && v.minor == 1 => Contract::V0_1,
            Ok(v) if v.major == 0 && v.minor == 2 => Contract::V0_2,
            _ => {
                return Err(LoadError::IncompatibleVersion {
                    file: file.to_path_buf(),
                    found: version.to_string(),
                    supported: CONTRACT_VERSIONS.to_string(),
                })
            }
        };
        return Ok((kind, contract));
    }
    Err(LoadError::NoKnownWorld {
        file: file.to_path_buf(),
        exports: if names.is_empty() {
            "nothing".into()
        } else {
            names.join(", ")
        },
        supported: CONTRACT_VERSIONS.into(),
    })
}

impl Plugin {
    /// Compiles, checks and describes a plugin. Slow (compilation): keep off the reconcile path.
    pub(crate) fn load(
        engine: &Engine,
        linkers: &Linkers,
        file: &Path,
        bytes: &[u8],
        sha256: String,
        limits_for: impl Fn(&str) -> Limits,
    ) -> Result<Self, LoadError> {
        let component = Component::new(engine, bytes).map_err(|e| LoadError::Compile {
            file: file.to_path_buf(),
            reason: format!("{e:#}"),
        })?;
        let (kind, contract) = detect_kind(file, &component, engine)?;
        let instantiate_err = |e: wasmtime::Error| LoadError::Instantiate {
            file: file.to_path_buf(),
            reason: format!("{e:#}"),
        };
        let linker = match kind {
            PluginKind::Scaler => &linkers.scaler,
            PluginKind::Placement => &linkers.placement,
            PluginKind::Validator => &linkers.validator,
            PluginKind::Rollout => &linkers.rollout,
        };
        let pre = linker
            .instantiate_pre(&component)
            .map_err(instantiate_err)?;
        // The world's bindings check every export's type once, here, so that a plugin whose
        // functions do not match its contract is refused at load, not on some later call.
        let checked = match (kind, contract) {
            (PluginKind::Scaler, Contract::V0_2) => scaler::ScalerPre::new(pre.clone()).map(drop),
            (PluginKind::Scaler, Contract::V0_1) => {
                v0_1::scaler::ScalerPre::new(pre.clone()).map(drop)
            }
            (PluginKind::Placement, Contract::V0_2) => {
                placement::PlacementPre::new(pre.clone()).map(drop)
            }
            (PluginKind::Placement, Contract::V0_1) => {
                v0_1::placement::PlacementPre::new(pre.clone()).map(drop)
            }
            (PluginKind::Validator, Contract::V0_2) => {
                validator::ValidatorPre::new(pre.clone()).map(drop)
            }
            (PluginKind::Validator, Contract::V0_1) => {
                v0_1::validator::ValidatorPre::new(pre.clone()).map(drop)
            }
            (PluginKind::Rollout, Contract::V0_2) => {
                rollout::RolloutPre::new(pre.clone()).map(drop)
            }
            (PluginKind::Rollout, Contract::V0_1) => Err(wasmtime::Error::msg(
                "contract 0.1 has no rollout world: build the plugin against 0.2",
            )),
        };
        checked.map_err(instantiate_err)?;
        let exports = export_indices(&component, engine, kind);
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut plugin = Plugin {
            file: file.to_path_buf(),
            sha256,
            kind,
            contract,
            info: PluginInfo {
                name: stem.clone(),
                version: String::new(),
                trait_types: Vec::new(),
                description: String::new(),
            },
            limits: limits_for(&stem),
            name: Arc::from(stem.as_str()),
            engine: engine.clone(),
            pre,
            exports,
            stats: Mutex::default(),
        };
        let info = plugin.describe().map_err(|e| LoadError::Describe {
            file: file.to_path_buf(),
            fault: e.fault,
        })?;
        plugin.limits = limits_for(&info.name);
        plugin.name = Arc::from(info.name.as_str());
        plugin.info = info;
        Ok(plugin)
    }

    pub fn name(&self) -> &str {
        &self.info.name
    }

    fn store(
        &self,
        placements: Placements,
        snapshot: Option<Arc<LatticeSnapshot>>,
    ) -> Store<State> {
        sandbox::new_store(
            &self.engine,
            Arc::clone(&self.name),
            self.limits,
            placements,
            snapshot,
        )
    }

    /// Runs `f` in a fresh store, timing it and turning failures into faults.
    fn call<R>(
        &self,
        placements: Placements,
        snapshot: Option<Arc<LatticeSnapshot>>,
        f: impl FnOnce(&mut Store<State>) -> Result<R, CallFailure>,
    ) -> Result<R, CallError> {
        let started = Instant::now();
        let mut store = self.store(placements, snapshot);
        let result = f(&mut store).map_err(|failure| match failure {
            CallFailure::Wasm(e) => sandbox::classify(e, &store, self.limits),
            CallFailure::Fault(fault) => fault,
        });
        let elapsed = started.elapsed().as_micros() as u64;
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.calls += 1;
        if stats.latencies_us.len() == LATENCY_WINDOW {
            stats.latencies_us.pop_front();
        }
        stats.latencies_us.push_back(elapsed);
        if let Err(fault) = &result {
            *stats.failures.entry(fault.kind()).or_default() += 1;
            tracing::warn!(plugin = %self.name, file = %self.file.display(), "plugin call failed: {fault}");
        }
        result.map_err(|fault| CallError {
            plugin: self.info.name.clone(),
            fault,
        })
    }

    /// Instantiates the plugin in `store` and calls one function of its API interface.
    ///
    /// Only the called function is looked up, and its type is checked once per plugin and
    /// signature, not on every call: the generated bindings would check every export on each
    /// instantiation, a measurable share of a call's fixed cost
    /// (docs/decisions/0006-plugin-call-profile.md, 0007).
    fn invoke<P, R>(
        &self,
        store: &mut Store<State>,
        function: &'static str,
        params: P,
    ) -> Result<R, CallFailure>
    where
        P: ComponentNamedList + Lower + Send + Sync,
        R: ComponentNamedList + Lift + Send + Sync + 'static,
    {
        let Some(export) = self.exports.get(function) else {
            return Err(CallFailure::Fault(Fault::Instantiate(format!(
                "the plugin exports no `{function}`"
            ))));
        };
        let signature = std::any::type_name::<(P, R)>();
        let instance = self.instance_pre().instantiate(&mut *store)?;
        let func = if export.checked.get() == Some(&signature) {
            let Some(func) = instance.get_func(&mut *store, export.index) else {
                return Err(CallFailure::Fault(Fault::Instantiate(format!(
                    "the plugin exports no `{function}`"
                ))));
            };
            // SAFETY: an earlier call checked this export of this same component against the
            // same Rust signature (`get_typed_func` below, which type-checks; `type_name`
            // spells each type by its full path, and the parameter and result types are this
            // crate's bindings), and a component's types never change after it is compiled.
            unsafe { TypedFunc::<P, R>::new_unchecked(func) }
        } else {
            let func = instance.get_typed_func::<P, R>(&mut *store, export.index)?;
            // A plugin whose functions are called with one signature each (as here) settles
            // on its first call; another signature would only be checked every time.
            let _ = export.checked.set(signature);
            func
        };
        Ok(func.call(&mut *store, params)?)
    }

    fn instance_pre(&self) -> &InstancePre<State> {
        &self.pre
    }

    fn expect(&self, kind: PluginKind) -> Result<(), CallFailure> {
        if self.kind == kind {
            Ok(())
        } else {
            Err(not_a(kind))
        }
    }

    pub fn describe(&self) -> Result<PluginInfo, CallError> {
        self.call(Placements::default(), None, |store| {
            let (info,): (PluginInfo,) = self.invoke(store, "describe", ())?;
            Ok(info)
        })
    }

    /// Asks a scaler for its commands and status. Commands naming hosts that are not in the
    /// snapshot are refused as invalid output.
    pub fn reconcile(
        &self,
        ctx: &ScalerContext,
        snapshot: &Arc<LatticeSnapshot>,
        placements: Placements,
    ) -> Result<ReconcileResult, CallError> {
        self.call(placements, Some(Arc::clone(snapshot)), |store| {
            self.expect(PluginKind::Scaler)?;
            let view = sandbox::lattice_resource(store, snapshot)?;
            let mut result = match self.contract {
                Contract::V0_2 => {
                    let (result,): (ReconcileResult,) =
                        self.invoke(store, "reconcile", (ctx, view))?;
                    result
                }
                Contract::V0_1 => {
                    let (old,): (v0_1::ReconcileResult,) =
                        self.invoke(store, "reconcile", (&compat::context(ctx), view))?;
                    compat::result(old)
                }
            };
            output::check_memo(result.memo.as_deref())?;
            output::check_commands(&result.commands)?;
            check_commands(&result.commands, snapshot)?;
            output::bound_status(&mut result.status);
            Ok(result)
        })
    }

    /// Asks a scaler for the commands that remove what it made.
    pub fn cleanup(
        &self,
        ctx: &ScalerContext,
        snapshot: &Arc<LatticeSnapshot>,
    ) -> Result<Vec<Command>, CallError> {
        self.call(Placements::default(), Some(Arc::clone(snapshot)), |store| {
            self.expect(PluginKind::Scaler)?;
            let view = sandbox::lattice_resource(store, snapshot)?;
            let (commands,): (Vec<Command>,) = match self.contract {
                Contract::V0_2 => self.invoke(store, "cleanup", (ctx, view))?,
                Contract::V0_1 => self.invoke(store, "cleanup", (&compat::context(ctx), view))?,
            };
            output::check_commands(&commands)?;
            check_commands(&commands, snapshot)?;
            Ok(commands)
        })
    }

    /// Asks a scaler what is wrong with its trait's properties (paths relative to them).
    pub fn check(&self, ctx: &ScalerContext) -> Result<Vec<Diagnostic>, CallError> {
        self.call(Placements::default(), None, |store| {
            self.expect(PluginKind::Scaler)?;
            let (mut found,): (Vec<Diagnostic>,) = match self.contract {
                Contract::V0_2 => self.invoke(store, "check", (ctx,))?,
                Contract::V0_1 => self.invoke(store, "check", (&compat::context(ctx),))?,
            };
            output::bound_diagnostics(&mut found);
            Ok(found)
        })
    }

    pub fn filter(
        &self,
        request: &PlacementRequest,
        candidates: &[HostInfo],
        snapshot: &Arc<LatticeSnapshot>,
    ) -> Result<Vec<Verdict>, CallError> {
        self.call(Placements::default(), Some(Arc::clone(snapshot)), |store| {
            self.expect(PluginKind::Placement)?;
            let view = sandbox::lattice_resource(store, snapshot)?;
            let (verdicts,): (Vec<Verdict>,) =
                self.invoke(store, "filter", (request, candidates, view))?;
            Ok(verdicts)
        })
    }

    pub fn score(
        &self,
        request: &PlacementRequest,
        candidates: &[HostInfo],
        snapshot: &Arc<LatticeSnapshot>,
    ) -> Result<Vec<HostScore>, CallError> {
        self.call(Placements::default(), Some(Arc::clone(snapshot)), |store| {
            self.expect(PluginKind::Placement)?;
            let view = sandbox::lattice_resource(store, snapshot)?;
            let (scores,): (Vec<HostScore>,) =
                self.invoke(store, "score", (request, candidates, view))?;
            Ok(scores)
        })
    }

    pub fn validate(&self, manifest_json: &str) -> Result<Vec<Diagnostic>, CallError> {
        self.call(Placements::default(), None, |store| {
            self.expect(PluginKind::Validator)?;
            let (mut found,): (Vec<Diagnostic>,) =
                self.invoke(store, "validate", (manifest_json,))?;
            output::bound_diagnostics(&mut found);
            Ok(found)
        })
    }

    /// Asks a rollout plugin for the next step of a rollout.
    pub fn step(&self, ctx: &RolloutContext) -> Result<RolloutDecision, CallError> {
        self.call(Placements::default(), None, |store| {
            self.expect(PluginKind::Rollout)?;
            let (mut decision,): (RolloutDecision,) = self.invoke(store, "step", (ctx,))?;
            output::check_memo(decision.memo.as_deref())?;
            output::check_rollout(&mut decision)?;
            Ok(decision)
        })
    }

    /// Asks a rollout plugin what is wrong with a `rollout` policy's properties.
    pub fn check_rollout(
        &self,
        strategy: &str,
        properties_json: &str,
    ) -> Result<Vec<Diagnostic>, CallError> {
        self.call(Placements::default(), None, |store| {
            self.expect(PluginKind::Rollout)?;
            let (mut found,): (Vec<Diagnostic>,) =
                self.invoke(store, "check", (strategy, properties_json))?;
            output::bound_diagnostics(&mut found);
            Ok(found)
        })
    }

    pub fn summary(&self) -> PluginSummary {
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let mut sorted: Vec<u64> = stats.latencies_us.iter().copied().collect();
        sorted.sort_unstable();
        let percentile = |p: f64| {
            (!sorted.is_empty()).then(|| {
                let i = ((sorted.len() - 1) as f64 * p).round() as usize;
                sorted[i]
            })
        };
        PluginSummary {
            name: self.info.name.clone(),
            version: self.info.version.clone(),
            kind: self.kind,
            file: self.file.clone(),
            sha256: self.sha256.clone(),
            trait_types: self.info.trait_types.clone(),
            description: self.info.description.clone(),
            contract: self.contract,
            calls: stats.calls,
            failures: stats
                .failures
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            p50_us: percentile(0.5),
            p99_us: percentile(0.99),
        }
    }
}

/// Why a call failed before classification.
enum CallFailure {
    Wasm(wasmtime::Error),
    Fault(Fault),
}

impl From<wasmtime::Error> for CallFailure {
    fn from(e: wasmtime::Error) -> Self {
        CallFailure::Wasm(e)
    }
}

impl From<Fault> for CallFailure {
    fn from(f: Fault) -> Self {
        CallFailure::Fault(f)
    }
}

/// One function of a plugin's API interface.
struct Export {
    index: ComponentExportIndex,
    /// The Rust signature (`type_name` of the parameters and results) this function's type was
    /// checked against in an earlier call. The component never changes, so a signature that
    /// matched once matches on every instance: later calls skip the check (see `invoke`).
    checked: OnceLock<&'static str>,
}

/// The functions of each world's API interface, by name, found in the component's exports.
fn export_indices(
    component: &Component,
    engine: &Engine,
    kind: PluginKind,
) -> BTreeMap<&'static str, Export> {
    let (interface, functions): (&str, &[&'static str]) = match kind {
        PluginKind::Scaler => ("scaler-api", &["describe", "reconcile", "cleanup", "check"]),
        PluginKind::Placement => ("placement-api", &["describe", "filter", "score"]),
        PluginKind::Validator => ("validator-api", &["describe", "validate"]),
        PluginKind::Rollout => ("rollout-api", &["describe", "step", "check"]),
    };
    let prefix = format!("trellis:plugin/{interface}@");
    let Some(instance) = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .find(|name| name.starts_with(&prefix))
        .and_then(|name| component.get_export_index(None, &name))
    else {
        return BTreeMap::new();
    };
    functions
        .iter()
        .filter_map(|f| {
            let index = component.get_export_index(Some(&instance), f)?;
            let checked = OnceLock::new();
            Some((*f, Export { index, checked }))
        })
        .collect()
}

fn not_a(kind: PluginKind) -> CallFailure {
    CallFailure::Fault(Fault::Instantiate(format!("the plugin is not a {kind}")))
}

/// Refuses commands that name hosts the lattice does not have.
fn check_commands(commands: &[Command], snapshot: &LatticeSnapshot) -> Result<(), Fault> {
    for (i, command) in commands.iter().enumerate() {
        let host = match command {
            Command::ScaleComponent(c) => Some(&c.host_id),
            Command::StartProvider(c) => Some(&c.host_id),
            Command::StopProvider(c) => Some(&c.host_id),
            _ => None,
        };
        if let Some(host) = host {
            if !snapshot.contains_host(host) {
                return Err(Fault::InvalidOutput(format!(
                    "command {i} names host '{host}', which is not in the lattice"
                )));
            }
        }
    }
    Ok(())
}
