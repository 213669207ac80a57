//! The reconcile loop of one lattice: follow one event from arrival to the commands it causes.
//!
//! 1. Events (`wasmbus.evt.{lattice}.>`), link and config changes (their KV buckets), manifest
//!    changes (the manifest store's KV bucket), command outcomes and a periodic tick all arrive
//!    in one `select!` and update [`LatticeState`] or the set of deployed apps.
//! 2. Any change marks the loop dirty; a short debounce later a *pass* runs.
//! 3. A pass takes one [`LatticeSnapshot`], and for every trait of every deployed app calls the
//!    scaler plugin that handles the trait type (placement plugins answer its `rank-hosts`).
//!    Plugin calls run on a blocking thread; a failing plugin fails only its own scaler.
//! 4. The commands go to the [`Executor`], which drops those in flight or backing off.
//! 5. Each scaler's status, aggregated per app, is published on `wadm.status.{lattice}.{app}`
//!    when it changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use futures::StreamExt;
use tokio::sync::mpsc;
use trellis_lattice::api::{ScalerStatus, Status, StatusInfo, StatusType};
use trellis_lattice::ctl::{self, CtlResponse, HostInventory, Link};
use trellis_lattice::event::{self, CloudEvent};
use trellis_lattice::manifest::ComponentType;
use trellis_lattice::Manifest;
use trellis_runtime::bindings::{
    Command, ComponentKind, ComponentSpec, ScalerContext, Status as PluginStatus,
};
use trellis_runtime::{LatticeSnapshot, Runtime};

use crate::executor::{command_key, Executor, Origin, Outcome};
use crate::state::LatticeState;
use crate::store::StoredApp;

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    /// A full pass runs at least this often, even without events.
    pub resync_interval: Duration,
    /// A host silent for this long is considered gone and its instances rescheduled.
    pub host_timeout: Duration,
    /// How long a command may stay unconfirmed before it counts as failed.
    pub command_timeout: Duration,
    /// Wait this long after a change before a pass, so a burst of events makes one pass.
    pub debounce: Duration,
}

impl Default for LoopSettings {
    fn default() -> Self {
        Self {
            resync_interval: Duration::from_secs(5),
            host_timeout: Duration::from_secs(15),
            command_timeout: Duration::from_secs(30),
            debounce: Duration::from_millis(20),
        }
    }
}

/// Everything the loop listens to, opened before the loop starts so nothing sent after
/// `Controller::start` returns is missed.
pub struct Inputs {
    events: async_nats::Subscriber,
    manifests: kv::Watch,
    links: kv::Watch,
    configs: kv::Watch,
}

impl Inputs {
    pub async fn open(
        client: &async_nats::Client,
        lattice: &str,
        manifests: &kv::Store,
        links: &kv::Store,
        configs: &kv::Store,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            events: client.subscribe(event::all_subjects(lattice)).await?,
            manifests: manifests.watch_with_history(">").await?,
            links: links.watch_with_history(">").await?,
            configs: configs.watch_with_history(">").await?,
        })
    }
}

/// Statuses of the apps of a lattice, shared with the API server.
pub type Statuses = Arc<Mutex<HashMap<String, Status>>>;

/// One scaler of a deployed app: a trait on a component.
struct ScalerSlot {
    origin: Origin,
    status_id: String,
    trait_type: String,
    component: String,
    ctx: ScalerContext,
}

pub struct Reconciler {
    lattice: String,
    client: async_nats::Client,
    runtime: Arc<Runtime>,
    settings: LoopSettings,
    state: LatticeState,
    executor: Executor,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    /// Deployed apps: name → the manifest of the deployed version.
    deployed: BTreeMap<String, Manifest>,
    /// Scalers that left since the last pass (an undeploy, or a version that dropped them),
    /// whose cleanup must run.
    to_clean: Vec<Cleanup>,
    statuses: Statuses,
    plugin_generation: u64,
    started: Instant,
}

impl Reconciler {
    pub fn new(
        lattice: &str,
        client: async_nats::Client,
        runtime: Arc<Runtime>,
        settings: LoopSettings,
        statuses: Statuses,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            lattice: lattice.to_string(),
            executor: Executor::new(client.clone(), lattice, settings.command_timeout, tx),
            client,
            runtime,
            settings,
            state: LatticeState::default(),
            outcomes: rx,
            deployed: BTreeMap::new(),
            to_clean: Vec::new(),
            statuses,
            plugin_generation: 0,
            started: Instant::now(),
        }
    }

    /// Runs until the NATS connection's subscriptions end.
    pub async fn run(mut self, inputs: Inputs) -> anyhow::Result<()> {
        let Inputs {
            mut events,
            manifests: mut manifest_watch,
            links: mut link_watch,
            configs: mut config_watch,
        } = inputs;
        self.discover_hosts().await;

        let mut tick =
            tokio::time::interval(self.settings.resync_interval.min(Duration::from_secs(1)));
        let mut last_pass = Instant::now() - self.settings.resync_interval;
        let mut dirty_since: Option<Instant> = Some(Instant::now());
        loop {
            let pass_due = dirty_since.map(|t| t + self.settings.debounce);
            tokio::select! {
                Some(msg) = events.next() => {
                    if self.on_event(&msg.payload) {
                        dirty_since.get_or_insert_with(Instant::now);
                    }
                }
                Some(entry) = manifest_watch.next() => {
                    if let Ok(entry) = entry {
                        self.on_manifest(entry);
                        dirty_since.get_or_insert_with(Instant::now);
                    }
                }
                Some(entry) = link_watch.next() => {
                    if let Ok(entry) = entry {
                        self.on_link(entry);
                        dirty_since.get_or_insert_with(Instant::now);
                    }
                }
                Some(entry) = config_watch.next() => {
                    if let Ok(entry) = entry {
                        self.on_config(entry);
                        dirty_since.get_or_insert_with(Instant::now);
                    }
                }
                Some(outcome) = self.outcomes.recv() => {
                    let failed = outcome.result.is_err();
                    self.executor.on_outcome(outcome, Instant::now());
                    if failed {
                        dirty_since.get_or_insert_with(Instant::now);
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    let dead = self.state.expire_hosts(self.settings.host_timeout, now);
                    for host in &dead {
                        tracing::warn!(lattice = %self.lattice, host, "host missed its heartbeats; rescheduling what it ran");
                    }
                    let generation = self.runtime.generation();
                    if !dead.is_empty()
                        || generation != self.plugin_generation
                        || now.duration_since(last_pass) >= self.settings.resync_interval
                        || self.executor.in_flight_count() > 0
                    {
                        self.plugin_generation = generation;
                        dirty_since.get_or_insert(now);
                    }
                }
                _ = sleep_until(pass_due) => {
                    dirty_since = None;
                    last_pass = Instant::now();
                    self.pass().await;
                }
                else => return Ok(()),
            }
        }
    }

    /// Applies one lattice event. Returns whether a pass should follow.
    fn on_event(&mut self, payload: &[u8]) -> bool {
        let Ok(cloud_event) = serde_json::from_slice::<CloudEvent>(payload) else {
            tracing::debug!(lattice = %self.lattice, "ignoring a message that is not a CloudEvent");
            return false;
        };
        let event = match cloud_event.decode() {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(lattice = %self.lattice, kind = cloud_event.kind(), "unreadable event: {e}");
                return false;
            }
        };
        let now = Instant::now();
        self.executor.on_event(&event, now);
        self.state.apply(&cloud_event.source, &event, now)
    }

    fn on_manifest(&mut self, entry: kv::Entry) {
        let app: Option<StoredApp> = match entry.operation {
            kv::Operation::Put => serde_json::from_slice(&entry.value).ok(),
            _ => None,
        };
        let deployed = app.as_ref().and_then(|a| a.deployed_manifest().cloned());
        let app = entry.key;
        match deployed {
            Some(manifest) => {
                // A scaler of the version now deployed must not be cleaned up, whatever left
                // before this pass.
                let kept: BTreeSet<String> = scaler_ids(&manifest);
                for cleanup in self.to_clean.iter_mut().filter(|c| c.app == app) {
                    cleanup.scalers.retain(|id| !kept.contains(id));
                }
                self.to_clean.retain(|c| !c.scalers.is_empty());
                if let Some(previous) = self.deployed.insert(app.clone(), manifest) {
                    let gone: BTreeSet<String> = scaler_ids(&previous)
                        .into_iter()
                        .filter(|id| !kept.contains(id))
                        .collect();
                    self.schedule_cleanup(app, previous, gone);
                }
            }
            None => {
                if let Some(previous) = self.deployed.remove(&app) {
                    let all = scaler_ids(&previous);
                    self.schedule_cleanup(app.clone(), previous, all);
                }
                let mut statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
                statuses.insert(
                    app,
                    Status::new(StatusInfo::new(StatusType::Undeployed, ""), Vec::new()),
                );
            }
        }
    }

    fn schedule_cleanup(&mut self, app: String, manifest: Manifest, scalers: BTreeSet<String>) {
        if !scalers.is_empty() {
            self.to_clean.push(Cleanup {
                app,
                manifest,
                scalers,
            });
        }
    }

    fn on_link(&mut self, entry: kv::Entry) {
        match entry.operation {
            kv::Operation::Put => {
                if let Ok(link) = serde_json::from_slice::<Link>(&entry.value) {
                    self.state.links.insert(link.key(), link);
                }
            }
            _ => {
                self.state.links.remove(&entry.key);
            }
        }
    }

    fn on_config(&mut self, entry: kv::Entry) {
        match entry.operation {
            kv::Operation::Put => {
                if let Ok(config) = serde_json::from_slice(&entry.value) {
                    self.state.configs.insert(entry.key.clone(), config);
                }
            }
            _ => {
                self.state.configs.remove(&entry.key);
            }
        }
    }

    /// Asks every host for its inventory, so a restarted controller knows the lattice at once
    /// instead of after the next heartbeats.
    async fn discover_hosts(&mut self) {
        let subjects = ctl::Subjects::new(&self.lattice);
        let hosts = match gather(
            &self.client,
            subjects.host_ping(),
            Duration::from_millis(500),
        )
        .await
        {
            Ok(replies) => replies,
            Err(e) => {
                tracing::warn!(lattice = %self.lattice, "host discovery failed: {e}");
                return;
            }
        };
        for reply in hosts {
            let Ok(resp) = serde_json::from_slice::<CtlResponse<ctl::Host>>(&reply) else {
                continue;
            };
            let Some(host) = resp.response else { continue };
            let inventory = self
                .client
                .request(subjects.host_get(&host.id), "".into())
                .await;
            if let Ok(msg) = inventory {
                if let Ok(CtlResponse {
                    response: Some(inv),
                    ..
                }) = serde_json::from_slice::<CtlResponse<HostInventory>>(&msg.payload)
                {
                    self.state.apply_inventory(&inv, Instant::now());
                }
            }
        }
        tracing::info!(lattice = %self.lattice, hosts = self.state.hosts.len(), "discovered hosts");
    }

    /// One reconcile pass over every deployed app.
    async fn pass(&mut self) {
        let now = Instant::now();
        self.executor.settle(&self.state, now);
        let snapshot = Arc::new(
            self.state
                .snapshot(now.duration_since(self.started).as_millis() as u64),
        );
        let apps: Vec<(String, Manifest)> = self
            .deployed
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let to_clean = std::mem::take(&mut self.to_clean);
        let runtime = Arc::clone(&self.runtime);
        let snap = Arc::clone(&snapshot);
        let lattice = self.lattice.clone();
        // Plugin calls are synchronous CPU work with their own deadlines: keep them off the
        // async workers.
        let planned = tokio::task::spawn_blocking(move || {
            let apps = apps
                .into_iter()
                .map(|(name, manifest)| {
                    let span = tracing::info_span!("reconcile", lattice = %lattice, app = %name);
                    let _guard = span.enter();
                    (name, plan_app(&runtime, &manifest, &snap))
                })
                .collect::<Vec<_>>();
            let cleanups = to_clean
                .iter()
                .map(|cleanup| cleanup_scalers(&runtime, cleanup, &snap))
                .collect::<Vec<_>>();
            (apps, cleanups)
        })
        .await;
        let Ok((apps, cleanups)) = planned else {
            tracing::error!(lattice = %self.lattice, "a reconcile pass panicked; retrying on the next tick");
            return;
        };

        let mut wanted: HashMap<String, Command> = HashMap::new();
        for planned in &cleanups {
            for (origin, commands) in planned {
                for c in commands {
                    wanted.insert(command_key(c), c.clone());
                }
                self.executor.issue(origin, commands.clone(), now);
            }
        }
        for (app, scalers) in apps {
            let mut scaler_statuses = Vec::new();
            for planned in scalers {
                for c in &planned.commands {
                    wanted.insert(command_key(c), c.clone());
                }
                self.executor.issue(&planned.origin, planned.commands, now);
                let info = match self.executor.failure_of(&planned.origin) {
                    Some(failure) => StatusInfo::new(StatusType::Failed, failure.reason.clone()),
                    None => planned.status,
                };
                scaler_statuses.push(ScalerStatus {
                    id: planned.status_id,
                    kind: planned.trait_type,
                    name: planned.component,
                    info,
                });
            }
            self.publish_status(&app, Status::aggregate(scaler_statuses))
                .await;
        }
        self.executor.forget_failures(&wanted, &self.state);
    }

    async fn publish_status(&self, app: &str, status: Status) {
        let changed = {
            let mut statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
            let changed = statuses.get(app) != Some(&status);
            if changed {
                statuses.insert(app.to_string(), status.clone());
            }
            changed
        };
        if changed {
            tracing::info!(lattice = %self.lattice, app, status = ?status.info.status_type, message = %status.info.message, "app status");
            let subject = trellis_lattice::api::Subjects::new(&self.lattice).status_updates(app);
            if let Ok(body) = serde_json::to_vec(&status) {
                let _ = self.client.publish(subject, body.into()).await;
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Sends a request and collects every reply that arrives within `window` (e.g. `host.ping`).
pub async fn gather(
    client: &async_nats::Client,
    subject: String,
    window: Duration,
) -> anyhow::Result<Vec<bytes::Bytes>> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await?;
    client.publish_with_reply(subject, inbox, "".into()).await?;
    client.flush().await?;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, replies.next()).await {
        out.push(msg.payload);
    }
    Ok(out)
}

/// What one scaler decided in one pass.
struct Planned {
    origin: Origin,
    status_id: String,
    trait_type: String,
    component: String,
    commands: Vec<Command>,
    status: StatusInfo,
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

fn scaler_slots(manifest: &Manifest) -> Vec<ScalerSlot> {
    let specs = component_specs(manifest);
    let mut slots = Vec::new();
    for (component, spec) in manifest.spec.components.iter().zip(&specs) {
        for (ti, t) in component.traits.iter().flatten().enumerate() {
            let status_id = format!("{}-{}-{ti}", t.trait_type, component.name);
            slots.push(ScalerSlot {
                origin: Origin {
                    app: manifest.name().to_string(),
                    scaler: status_id.clone(),
                },
                status_id,
                trait_type: t.trait_type.clone(),
                component: component.name.clone(),
                ctx: ScalerContext {
                    app: manifest.name().to_string(),
                    version: manifest.version().to_string(),
                    component: spec.clone(),
                    components: specs.clone(),
                    trait_type: t.trait_type.clone(),
                    properties: t.properties.to_string(),
                },
            });
        }
    }
    slots
}

fn plan_app(
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
struct Cleanup {
    app: String,
    manifest: Manifest,
    scalers: BTreeSet<String>,
}

/// The status ids of every scaler of a manifest.
fn scaler_ids(manifest: &Manifest) -> BTreeSet<String> {
    scaler_slots(manifest)
        .into_iter()
        .map(|s| s.status_id)
        .collect()
}

fn cleanup_scalers(
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

fn plugin_status(status: PluginStatus) -> StatusInfo {
    match status {
        PluginStatus::Deployed => StatusInfo::new(StatusType::Deployed, ""),
        PluginStatus::Reconciling(m) => StatusInfo::new(StatusType::Reconciling, m),
        PluginStatus::Failed(m) => StatusInfo::new(StatusType::Failed, m),
        PluginStatus::Waiting(m) => StatusInfo::new(StatusType::Waiting, m),
    }
}
