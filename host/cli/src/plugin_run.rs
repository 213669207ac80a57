//! `trellis plugin run`: one plugin, any language, run on a lattice state in the controller's
//! sandbox, with what it decides and what its calls cost.
//!
//! Nothing here decides anything of its own: the plugin is loaded by the controller's runtime
//! beside the other plugins it needs (a scaler's rankings call the placement plugins), the app
//! is planned by the controller's planning (`plan_fresh`, what a `plan` of a first deploy
//! computes) and checked by its validation, so a run says what the controller would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::Serialize;
use trellis_lattice::api::{Diagnostic, PlannedCommand, ScalerStatus};
use trellis_lattice::Manifest;
use trellis_runtime::bindings::placement::exports::trellis::plugin::placement_api::{
    HostScore, Verdict,
};
use trellis_runtime::bindings::PlacementRequest;
use trellis_runtime::{
    LatticeDocument, LatticeSnapshot, Plugin, PluginKind, Runtime, RuntimeConfig,
    MAX_DOCUMENT_BYTES,
};

/// What a run found. Field names are the output of `-o json`, for scripts and the non-Rust
/// plugin templates' tests.
#[derive(Debug, Serialize)]
pub struct PluginRun {
    pub plugin: RunPlugin,
    /// How long loading took (compiling, checking, `describe`), in milliseconds.
    pub load_ms: f64,
    /// For a scaler: the status of each trait of its types in the manifest.
    pub scalers: Vec<ScalerStatus>,
    /// For a scaler: what deploying the manifest would issue first, as the requests that would
    /// carry it.
    pub commands: Vec<PlannedCommand>,
    /// The manifest's validation with this plugin loaded (every checker's findings; `source`
    /// names who found each).
    pub diagnostics: Vec<Diagnostic>,
    /// For a placement plugin: its filter and score for each component of the manifest, with
    /// every host a candidate.
    pub placements: Vec<PlacementRun>,
    pub calls: CallFigures,
    /// The other plugins loaded beside it, by name.
    pub others: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct RunPlugin {
    pub file: PathBuf,
    pub name: String,
    pub version: String,
    pub kind: String,
    pub contract: String,
    pub trait_types: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PlacementRun {
    pub component_id: String,
    pub verdicts: Vec<RunVerdict>,
    pub scores: Vec<RunScore>,
}

#[derive(Debug, Serialize)]
pub struct RunVerdict {
    pub host_id: String,
    pub fits: bool,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct RunScore {
    pub host_id: String,
    pub value: i64,
}

/// The plugin's calls in this run: how many, which failed (by fault), and their latency.
#[derive(Debug, Serialize)]
pub struct CallFigures {
    pub count: u64,
    pub failures: BTreeMap<String, u64>,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
}

/// Reads a state file as `trellis get snapshot -o json` writes it.
pub fn read_state(file: &Path) -> anyhow::Result<LatticeSnapshot> {
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read the lattice state {}", file.display()))?
        .len();
    if size > MAX_DOCUMENT_BYTES {
        bail!(
            "the lattice state {} is {size} bytes, over the {MAX_DOCUMENT_BYTES} a state file may have: is it the file `trellis get snapshot -o json` wrote?",
            file.display()
        );
    }
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the lattice state {}", file.display()))?;
    let document: LatticeDocument = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a lattice state (write one with `trellis get snapshot -o json`, or see docs/plugins.md for the format)",
            file.display()
        )
    })?;
    document
        .into_snapshot()
        .with_context(|| format!("the lattice state {} is inconsistent", file.display()))
}

/// A folder of its own for the run's plugins, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let dir =
            std::env::temp_dir().join(format!("trellis-plugin-run-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The plugin under test's file name in the scratch folder: first in file-name order, so that
/// where another plugin of the folder claims the same trait type, the one under test wins
/// (the runtime gives a name to the first file claiming it).
const UNDER_TEST: &str = "0-under-test.wasm";

/// Runs `plugin` on `manifest` and `snapshot`, as a controller of lattice `lattice` with the
/// plugins of `others` (if any) would, compiling through the cache in `cache_dir` (if any);
/// a scaler's pass or a placement's ranking `repeat` times (at least once).
pub fn run(
    plugin: &Path,
    others: Option<&Path>,
    manifest: &Manifest,
    snapshot: LatticeSnapshot,
    lattice: &str,
    cache_dir: Option<PathBuf>,
    repeat: u32,
) -> anyhow::Result<PluginRun> {
    let scratch = stage(plugin, others)?;
    let runtime = Runtime::new(RuntimeConfig {
        plugin_dir: scratch.0.clone(),
        cache_dir,
        ..RuntimeConfig::default()
    })?;
    let started = Instant::now();
    runtime.reload();
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;
    let set = runtime.plugins();
    let file = scratch.0.join(UNDER_TEST);
    let Some(under_test) = set.by_file.get(&file).cloned() else {
        match set.problems.get(&file) {
            Some(problem) => bail!(
                "{} cannot be loaded: {}",
                plugin.display(),
                problem
                    .to_string()
                    .replace(&file.display().to_string(), &plugin.display().to_string())
            ),
            None => bail!("{} was not loaded", plugin.display()),
        }
    };
    let snapshot = Arc::new(snapshot);
    // Findings that name the plugin folder would name the scratch one: name the real one.
    let folder = others
        .map(|d| d.display().to_string())
        .unwrap_or_else(|| "the controller's plugin folder".into());
    let scratch_path = scratch.0.display().to_string();
    let diagnostics = trellis_controller::validate::validate(&runtime, manifest)
        .into_iter()
        .map(|mut d| {
            d.message = d.message.replace(&scratch_path, &folder);
            d.hint = d.hint.replace(&scratch_path, &folder);
            d
        })
        .collect();
    let (mut scalers, mut commands, mut placements) = (Vec::new(), Vec::new(), Vec::new());
    match under_test.kind {
        PluginKind::Scaler => {
            let trait_types = &under_test.info.trait_types;
            (scalers, commands) = plan(&runtime, manifest, &snapshot, lattice, trait_types, repeat);
        }
        PluginKind::Placement => {
            for _ in 0..repeat.max(1) {
                placements = place(&under_test, manifest, &snapshot)?;
            }
        }
        PluginKind::Validator | PluginKind::Rollout => {}
    }
    let summary = under_test.summary();
    let others = set
        .by_file
        .values()
        .filter(|p| p.file != file)
        .map(|p| p.info.name.clone())
        .collect();
    Ok(PluginRun {
        plugin: RunPlugin {
            file: plugin.to_path_buf(),
            name: summary.name,
            version: summary.version,
            kind: summary.kind.to_string(),
            contract: summary.contract.to_string(),
            trait_types: summary.trait_types,
        },
        load_ms,
        scalers,
        commands,
        diagnostics,
        placements,
        calls: CallFigures {
            count: summary.calls,
            failures: summary.failures,
            p50_us: summary.p50_us,
            p99_us: summary.p99_us,
        },
        others,
    })
}

/// A scratch folder holding `plugin` (as [`UNDER_TEST`]) and the `.wasm` files of `others`.
fn stage(plugin: &Path, others: Option<&Path>) -> anyhow::Result<Scratch> {
    let scratch = Scratch::new()?;
    std::fs::copy(plugin, scratch.0.join(UNDER_TEST))
        .with_context(|| format!("cannot read plugin {}", plugin.display()))?;
    if let Some(dir) = others {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read the plugin folder {}", dir.display()))?;
        let under_test = std::fs::canonicalize(plugin).ok();
        for entry in entries.flatten() {
            let path = entry.path();
            let same = std::fs::canonicalize(&path).ok() == under_test;
            if path.extension().is_some_and(|e| e == "wasm") && !same {
                std::fs::copy(&path, scratch.0.join(entry.file_name()))
                    .with_context(|| format!("cannot copy {}", path.display()))?;
            }
        }
    }
    Ok(scratch)
}

/// The statuses and commands of the traits of `trait_types` in a first deploy of `manifest`,
/// planned `repeat` times (each repetition is the same pass on the same state: only the sample
/// of call latencies grows, for measuring a plugin).
fn plan(
    runtime: &Runtime,
    manifest: &Manifest,
    snapshot: &Arc<LatticeSnapshot>,
    lattice: &str,
    trait_types: &[String],
    repeat: u32,
) -> (Vec<ScalerStatus>, Vec<PlannedCommand>) {
    let plan_once = || {
        trellis_controller::reconciler::planning::plan_fresh(runtime, manifest, snapshot, lattice)
    };
    let mut plan = plan_once();
    for _ in 1..repeat {
        plan = plan_once();
    }
    let ours = |kind: &str| trait_types.iter().any(|t| t == kind);
    let scalers: Vec<ScalerStatus> = plan.scalers.into_iter().filter(|s| ours(&s.kind)).collect();
    let ids: Vec<&str> = scalers.iter().map(|s| s.id.as_str()).collect();
    let commands = plan
        .commands
        .into_iter()
        .filter(|c| ids.contains(&c.scaler.as_str()))
        .collect();
    (scalers, commands)
}

/// A placement plugin's filter and score for each component of the manifest.
fn place(
    plugin: &Plugin,
    manifest: &Manifest,
    snapshot: &Arc<LatticeSnapshot>,
) -> anyhow::Result<Vec<PlacementRun>> {
    let candidates = snapshot.hosts();
    let mut runs = Vec::new();
    for component in &manifest.spec.components {
        let request = PlacementRequest {
            component_id: manifest.component_id(component),
            requirements: Vec::new(),
        };
        let verdicts: Vec<Verdict> = plugin
            .filter(&request, &candidates, snapshot)
            .with_context(|| format!("filter for {}", request.component_id))?;
        let fitting: Vec<_> = candidates
            .iter()
            .filter(|h| {
                verdicts
                    .iter()
                    .find(|v| v.host_id == h.id)
                    .is_none_or(|v| v.fits)
            })
            .cloned()
            .collect();
        let scores: Vec<HostScore> = plugin
            .score(&request, &fitting, snapshot)
            .with_context(|| format!("score for {}", request.component_id))?;
        runs.push(PlacementRun {
            component_id: request.component_id,
            verdicts: verdicts
                .into_iter()
                .map(|v| RunVerdict {
                    host_id: v.host_id,
                    fits: v.fits,
                    reason: v.reason,
                })
                .collect(),
            scores: scores
                .into_iter()
                .map(|s| RunScore {
                    host_id: s.host_id,
                    value: s.value,
                })
                .collect(),
        });
    }
    Ok(runs)
}
