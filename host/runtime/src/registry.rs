//! The plugin folder and what it holds now.
//!
//! A reload reads the folder, compiles only files whose content changed (by SHA-256), and swaps
//! the whole set in one step: a call in flight keeps the `Arc<Plugin>` it started with, so it
//! finishes on the old version. A file that fails to load while an older version of it was
//! serving leaves the old version in service, and the failure is reported.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use wasmtime::Engine;

use crate::error::LoadError;
use crate::placement::{Placements, Shortlist};
use crate::plugin::{Linkers, Plugin, PluginKind, PluginSummary};
use crate::sandbox::{self, Limits};

/// How the runtime is set up.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// The folder whose `*.wasm` files are the plugins.
    pub plugin_dir: PathBuf,
    /// Limits for plugins not named in `per_plugin`.
    pub default_limits: Limits,
    /// Limits by plugin name (as `describe()` says it) or file stem.
    pub per_plugin: HashMap<String, Limits>,
    /// How many of the feasible hosts one placement ranking looks at.
    pub shortlist: Shortlist,
    /// The placement policy of apps that name none (`None`: the always-on plugins only).
    pub default_policy: Option<String>,
    /// Where compiled plugins are kept between loads and processes (`None`: compile each load).
    pub cache_dir: Option<PathBuf>,
}

/// The plugins in service, by role.
#[derive(Debug, Default)]
pub struct PluginSet {
    /// Trait type → the scaler that handles it.
    pub scalers: BTreeMap<String, Arc<Plugin>>,
    /// The placement plugins that take part in every ranking (they name no policy), in
    /// file-name order: the order their filters run in.
    pub placements: Placements,
    /// Opt-in placement plugins by the policy names they give (`trait-types` of their
    /// `describe`): they take part in the rankings of apps that ask for them.
    pub policies: BTreeMap<String, Arc<Plugin>>,
    /// The policy of apps that name none.
    pub default_policy: Option<String>,
    pub validators: Vec<Arc<Plugin>>,
    /// Rollout strategy (`trait-types` of a rollout plugin's `describe`) → its plugin.
    pub rollouts: BTreeMap<String, Arc<Plugin>>,
    /// Every plugin in service, by file.
    pub by_file: BTreeMap<PathBuf, Arc<Plugin>>,
    /// Files that are not in service (or whose newest version is not), and why.
    pub problems: BTreeMap<PathBuf, LoadError>,
}

impl PluginSet {
    pub fn scaler_for(&self, trait_type: &str) -> Option<Arc<Plugin>> {
        self.scalers.get(trait_type).cloned()
    }

    /// The placements an app's rankings use: the always-on plugins, and the plugin of
    /// `policy` (or of the default policy, when the app names none). An unknown policy is an
    /// error that says what is loaded.
    pub fn placements_for(&self, policy: Option<&str>) -> Result<Placements, String> {
        let (name, named_by) = match (policy, self.default_policy.as_deref()) {
            (Some(p), _) => (p, "the app's annotation `trellis.dev/placement`"),
            (None, Some(p)) => (p, "the controller's `[placement] default_policy`"),
            (None, None) => return Ok(self.placements.clone()),
        };
        let Some(plugin) = self.policies.get(name) else {
            let loaded: Vec<&str> = self.policies.keys().map(String::as_str).collect();
            return Err(format!(
                "no placement plugin provides policy `{name}` (named by {named_by}); loaded policies: {}",
                if loaded.is_empty() { "none".to_string() } else { loaded.join(", ") }
            ));
        };
        let mut plugins: Vec<Arc<Plugin>> = self.placements.plugins.to_vec();
        plugins.push(Arc::clone(plugin));
        Ok(Placements {
            plugins: plugins.into(),
            shortlist: self.placements.shortlist,
        })
    }

    /// Every trait type some loaded scaler handles, sorted.
    pub fn trait_types(&self) -> Vec<String> {
        self.scalers.keys().cloned().collect()
    }

    pub fn summaries(&self) -> Vec<PluginSummary> {
        self.by_file.values().map(|p| p.summary()).collect()
    }
}

/// The plugin runtime of one process.
pub struct Runtime {
    engine: Engine,
    linkers: Linkers,
    config: RuntimeConfig,
    current: RwLock<Arc<PluginSet>>,
    /// Bumped on every reload that changed the set, so callers can notice.
    generation: AtomicU64,
    /// Serialises reloads; the set itself is swapped atomically.
    reload_lock: Mutex<Fingerprint>,
}

type Fingerprint = BTreeMap<PathBuf, (u64, Option<SystemTime>)>;

impl Runtime {
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let engine = crate::engine::new_engine(config.cache_dir.as_deref())?;
        let linkers = Linkers {
            scaler: sandbox::scaler_linker(&engine)?,
            placement: sandbox::placement_linker(&engine)?,
            validator: sandbox::validator_linker(&engine)?,
            rollout: sandbox::rollout_linker(&engine)?,
        };
        Ok(Self {
            engine,
            linkers,
            config,
            current: RwLock::default(),
            generation: AtomicU64::new(0),
            reload_lock: Mutex::default(),
        })
    }

    pub fn plugin_dir(&self) -> &Path {
        &self.config.plugin_dir
    }

    /// The plugins in service now. Cheap: an `Arc` clone.
    pub fn plugins(&self) -> Arc<PluginSet> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn limits_for(&self, name: &str) -> Limits {
        self.config
            .per_plugin
            .get(name)
            .copied()
            .unwrap_or(self.config.default_limits)
    }

    /// Reloads the folder if any `*.wasm` in it was added, changed or removed since the last
    /// look. Returns whether the set in service changed.
    pub fn reload_if_changed(&self) -> bool {
        let mut last = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        let now = fingerprint(&self.config.plugin_dir);
        if *last == now && self.generation() > 0 {
            return false;
        }
        *last = now;
        self.reload_locked();
        true
    }

    /// Reloads the folder now.
    pub fn reload(&self) {
        let mut last = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        *last = fingerprint(&self.config.plugin_dir);
        self.reload_locked();
    }

    fn reload_locked(&self) {
        let old = self.plugins();
        let mut files = wasm_files(&self.config.plugin_dir);
        files.sort();
        let mut loaded: Vec<Arc<Plugin>> = Vec::new();
        let mut problems = BTreeMap::new();
        for file in files {
            match self.load_file(&file, &old) {
                Ok(plugin) => loaded.push(plugin),
                Err(error) => {
                    if let Some(previous) = old.by_file.get(&file) {
                        tracing::error!(file = %file.display(), "{error}; the previous version stays in service");
                        loaded.push(Arc::clone(previous));
                    } else {
                        tracing::error!(file = %file.display(), "{error}");
                    }
                    problems.insert(file, error);
                }
            }
        }
        let mut set = PluginSet {
            problems,
            ..PluginSet::default()
        };
        let mut placements = Vec::new();
        // Files already serving a trait type keep it over newcomers; otherwise file-name order.
        loaded.sort_by_key(|p| (!old.by_file.contains_key(&p.file), p.file.clone()));
        for plugin in loaded {
            match plugin.kind {
                PluginKind::Scaler => {
                    if let Err((trait_type, other)) = claim_names(&mut set.scalers, &plugin) {
                        let error = LoadError::DuplicateTraitType {
                            file: plugin.file.clone(),
                            trait_type,
                            other,
                        };
                        tracing::error!("{error}");
                        set.problems.insert(plugin.file.clone(), error);
                        continue;
                    }
                }
                PluginKind::Placement if plugin.info.trait_types.is_empty() => {
                    placements.push(Arc::clone(&plugin))
                }
                PluginKind::Placement => {
                    if let Err((policy, other)) = claim_names(&mut set.policies, &plugin) {
                        let error = LoadError::DuplicatePolicy {
                            file: plugin.file.clone(),
                            policy,
                            other,
                        };
                        tracing::error!("{error}");
                        set.problems.insert(plugin.file.clone(), error);
                        continue;
                    }
                }
                PluginKind::Validator => set.validators.push(Arc::clone(&plugin)),
                PluginKind::Rollout => {
                    if let Err((strategy, other)) = claim_names(&mut set.rollouts, &plugin) {
                        let error = LoadError::DuplicateStrategy {
                            file: plugin.file.clone(),
                            strategy,
                            other,
                        };
                        tracing::error!("{error}");
                        set.problems.insert(plugin.file.clone(), error);
                        continue;
                    }
                }
            }
            set.by_file.insert(plugin.file.clone(), plugin);
        }
        placements.sort_by(|a, b| a.file.cmp(&b.file));
        set.placements = Placements {
            plugins: placements.into(),
            shortlist: self.config.shortlist,
        };
        set.default_policy = self.config.default_policy.clone();
        for plugin in set.by_file.values() {
            if !old
                .by_file
                .get(&plugin.file)
                .is_some_and(|o| Arc::ptr_eq(o, plugin))
            {
                tracing::info!(
                    plugin = plugin.name(),
                    kind = %plugin.kind,
                    version = %plugin.info.version,
                    file = %plugin.file.display(),
                    trait_types = ?plugin.info.trait_types,
                    "plugin loaded"
                );
            }
        }
        for file in old.by_file.keys() {
            if !set.by_file.contains_key(file) {
                tracing::info!(file = %file.display(), "plugin removed");
            }
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn load_file(&self, file: &Path, old: &PluginSet) -> Result<Arc<Plugin>, LoadError> {
        let bytes = std::fs::read(file).map_err(|e| LoadError::Read {
            file: file.to_path_buf(),
            reason: e.to_string(),
        })?;
        let sha256 = hex(&Sha256::digest(&bytes));
        if let Some(previous) = old.by_file.get(file) {
            if previous.sha256 == sha256 {
                return Ok(Arc::clone(previous));
            }
        }
        let plugin = Plugin::load(&self.engine, &self.linkers, file, &bytes, sha256, |name| {
            self.limits_for(name)
        })?;
        Ok(Arc::new(plugin))
    }

    /// Polls the folder in a background thread and reloads on change. Polling (rather than
    /// inotify) also works on network and container file systems, and a quarter second is far
    /// inside the "within a second" promise.
    pub fn watch(self: &Arc<Self>, interval: Duration) {
        let weak = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("trellis-plugin-watch".into())
            .spawn(move || loop {
                std::thread::sleep(interval);
                match weak.upgrade() {
                    Some(runtime) => {
                        runtime.reload_if_changed();
                    }
                    None => return,
                }
            })
            .expect("spawn the plugin watcher thread");
    }
}

fn wasm_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .collect()
}

fn fingerprint(dir: &Path) -> Fingerprint {
    wasm_files(dir)
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
            let modified = meta.and_then(|m| m.modified().ok());
            (p, (len, modified))
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Gives `plugin` every name it claims (`trait-types`: a scaler's trait types, a placement
/// plugin's policies) in `by_name`, unless another plugin holds one of them: then that name
/// and the other plugin's file, and nothing is taken.
fn claim_names(
    by_name: &mut BTreeMap<String, Arc<Plugin>>,
    plugin: &Arc<Plugin>,
) -> Result<(), (String, PathBuf)> {
    let names = &plugin.info.trait_types;
    if let Some(clash) = names
        .iter()
        .find_map(|t| by_name.get(t).map(|other| (t.clone(), other.file.clone())))
    {
        return Err(clash);
    }
    for t in names {
        by_name.insert(t.clone(), Arc::clone(plugin));
    }
    Ok(())
}
