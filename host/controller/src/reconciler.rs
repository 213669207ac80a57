//! The reconcile loop of one lattice: follow one event from arrival to the commands it causes.
//!
//! 1. Events (a JetStream stream over `wasmbus.evt.{lattice}.>`, so a restarted controller
//!    replays what it missed), link and config changes (their KV buckets), manifest changes
//!    (the manifest store's KV bucket), ownership changes, command outcomes, `plan` queries and
//!    a periodic tick all arrive in one `select!` and update [`LatticeState`], the set of
//!    deployed apps or who owns them.
//! 2. A change marks the apps it concerns dirty (a change to a component marks the apps that
//!    run it; a host joining, leaving or changing labels marks every app); the periodic tick
//!    marks every app. A short debounce later a *pass* runs.
//! 3. A pass takes one [`LatticeSnapshot`], and for every scaler of every dirty app this
//!    controller owns ([`Ownership`]) calls the scaler plugin that handles the trait type
//!    (placement plugins answer its `rank-hosts`). Plugin calls run on a blocking thread; a
//!    failing plugin fails only its own scaler.
//! 4. The commands go to the [`Executor`], which drops those in flight or backing off.
//! 5. Each scaler's status, aggregated per app, is published on `wadm.status.{lattice}.{app}`
//!    and kept in a KV bucket (so every controller answers `status`) when it changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, kv};
use futures::stream::BoxStream;
use futures::{FutureExt as _, StreamExt};
use tokio::sync::{mpsc, oneshot};
use trellis_bus::resume::{self, Resumed};
use trellis_lattice::api::{
    GetResult, PlanResponse, PlannedCommand, ScalerStatus, Status, StatusInfo, StatusType,
};
use trellis_lattice::ctl::{self, CtlResponse, HostInventory, Link};
use trellis_lattice::event::{self, CloudEvent};
use trellis_lattice::manifest::ComponentType;
use trellis_lattice::Manifest;
use trellis_runtime::bindings::{
    Command, ComponentKind, ComponentSpec, ScalerContext, Status as PluginStatus,
};
use trellis_runtime::{LatticeSnapshot, Runtime};

use crate::executor::{command_key, decode, encode, Executor, Origin, Outcome};
use crate::ownership::{controllers_bucket, owners_bucket, Ownership, OwnershipWatches};
use crate::state::{overlay, LatticeState, Touched};
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
    /// How long a controller's ownership of its apps outlives its last renewal: when a
    /// controller dies, others take its apps over this long after they last heard from it.
    pub lease: Duration,
    /// At start, lattice events this old are replayed from the event stream (then every host
    /// is asked for its inventory): a controller restarting within this window misses nothing.
    pub event_replay: Duration,
}

impl Default for LoopSettings {
    fn default() -> Self {
        Self {
            resync_interval: Duration::from_secs(5),
            host_timeout: Duration::from_secs(15),
            command_timeout: Duration::from_secs(30),
            debounce: Duration::from_millis(20),
            lease: Duration::from_secs(3),
            event_replay: Duration::from_secs(60),
        }
    }
}

/// The JetStream stream holding a lattice's events.
pub fn events_stream(lattice: &str) -> String {
    format!("TRELLIS_EVENTS_{lattice}")
}

/// Events older than this leave the stream: it exists to bridge a controller restart, not to
/// archive the lattice.
const EVENTS_MAX_AGE: Duration = Duration::from_secs(600);
/// A cap on the stream's size, so 10,000 hosts' heartbeats cannot fill the disk.
const EVENTS_MAX_BYTES: i64 = 512 * 1024 * 1024;

/// How long one pass may spend in plugin calls before leaving the remaining apps to the next
/// pass: the loop must keep reading events, or heartbeats go unread and hosts look dead.
const PASS_BUDGET: Duration = Duration::from_millis(250);

/// How fresh the last event read must be for the controller to count as caught up although
/// the stream held more: those are newer still, so no host's silence is misjudged by more
/// than this.
const CAUGHT_UP_LAG: Duration = Duration::from_millis(500);

/// Whether the controller reads events as they come: nothing was left in the stream when it
/// read the last one, or that one was only just published. Requiring nothing left alone is not
/// enough: two hosts heartbeating moments apart, in step with the controller's tick, leave the
/// second heartbeat pending at every tick, and a dead host was then never declared dead.
fn caught_up(pending: u64, lag: Duration) -> bool {
    pending == 0 || lag <= CAUGHT_UP_LAG
}

/// The KV bucket where the owner of each app keeps its status, so that every controller of the
/// lattice answers `status` and `list` alike.
pub fn status_bucket(lattice: &str) -> String {
    format!("TRELLIS_STATUS_{lattice}")
}

/// One lattice event from the stream.
pub struct EventMessage {
    pub payload: bytes::Bytes,
    /// How long ago the server stored it (zero for live events, more for replayed ones).
    pub age: Duration,
    /// How many more events the stream held when this one was delivered.
    pub pending: u64,
    /// Its sequence in the stream: a reopened stream resumes after the last one read.
    pub sequence: u64,
}

/// Opens the lattice's event stream (creating it when missing) and an ordered consumer that
/// starts `replay` in the past. The consumer is reopened whenever it fails, ends or the NATS
/// connection comes back (a nats-server restart loses it), resuming after the last event read
/// ([`trellis_bus::resume`]); [`Resumed::Reopened`] then says that events may have been missed
/// while the server was away (heartbeats, above all).
pub async fn event_stream(
    js: &jetstream::Context,
    lattice: &str,
    replay: Duration,
) -> anyhow::Result<BoxStream<'static, Resumed<EventMessage>>> {
    let subjects = event::all_subjects(lattice);
    let name = events_stream(lattice);
    let stream = match js.get_stream(&name).await {
        Ok(stream) => stream,
        Err(_) => {
            let created = js
                .create_stream(jetstream::stream::Config {
                    name: name.clone(),
                    subjects: vec![subjects.clone()],
                    max_age: EVENTS_MAX_AGE,
                    max_bytes: EVENTS_MAX_BYTES,
                    discard: jetstream::stream::DiscardPolicy::Old,
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: 1,
                    ..Default::default()
                })
                .await;
            match created {
                Ok(stream) => stream,
                // Another stream may capture the lattice's events already (a wadm on the same
                // NATS makes one); read from that one.
                Err(create_err) => {
                    let other = js.stream_by_subject(subjects.clone()).await.with_context(|| {
                        format!("cannot create the event stream {name} over {subjects} ({create_err}), and no stream captures that subject. Is JetStream enabled (nats-server -js)?")
                    })?;
                    js.get_stream(&other)
                        .await
                        .with_context(|| format!("opening event stream {other}"))?
                }
            }
        }
    };
    // The stream actually read (ours, or the one found capturing the subject).
    let name = stream.cached_info().config.name.clone();
    let start = time::OffsetDateTime::now_utc()
        - time::Duration::try_from(replay).unwrap_or(time::Duration::ZERO);
    let first = open_event_consumer(js, &name, subjects.clone(), start, None).await?;
    let reopen = {
        let (js, name) = (js.clone(), name.clone());
        move |after: Option<u64>| {
            let (js, name, subjects) = (js.clone(), name.clone(), subjects.clone());
            async move { open_event_consumer(&js, &name, subjects, start, after).await }
        }
    };
    Ok(trellis_bus::resume::resume(
        &js.client(),
        format!("event stream {name} of lattice {lattice}"),
        Some(first),
        |event: &EventMessage| event.sequence,
        reopen,
    ))
}

/// An ordered consumer on the event stream `name`, from `start` or just after sequence `after`.
async fn open_event_consumer(
    js: &jetstream::Context,
    name: &str,
    subjects: String,
    start: time::OffsetDateTime,
    after: Option<u64>,
) -> anyhow::Result<BoxStream<'static, anyhow::Result<EventMessage>>> {
    let deliver_policy = match after {
        Some(sequence) => jetstream::consumer::DeliverPolicy::ByStartSequence {
            start_sequence: sequence + 1,
        },
        None => jetstream::consumer::DeliverPolicy::ByStartTime { start_time: start },
    };
    let stream = js
        .get_stream(name)
        .await
        .with_context(|| format!("cannot open the event stream {name}"))?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: subjects,
            deliver_policy,
            ..Default::default()
        })
        .await
        .with_context(|| format!("cannot read lattice events from stream {name}"))?;
    let messages = consumer
        .messages()
        .await
        .with_context(|| format!("cannot read lattice events from stream {name}"))?;
    Ok(messages
        .map(|msg| -> anyhow::Result<EventMessage> {
            let msg = msg?;
            let (age, pending, sequence) = match msg.info() {
                Ok(info) => {
                    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as i128;
                    let age = (now - info.published.unix_timestamp_nanos()).max(0);
                    (
                        Duration::from_nanos(age as u64),
                        info.pending,
                        info.stream_sequence,
                    )
                }
                Err(_) => (Duration::ZERO, 0, 0),
            };
            Ok(EventMessage {
                payload: msg.message.payload.clone(),
                age,
                pending,
                sequence,
            })
        })
        .boxed())
}

/// Everything the loop listens to, opened before the loop starts so nothing sent after
/// `Controller::start` returns is missed. The JetStream inputs (events and KV watches) reopen
/// themselves after a nats-server restart and never end ([`trellis_bus::resume`]).
pub struct Inputs {
    events: BoxStream<'static, Resumed<EventMessage>>,
    manifests: BoxStream<'static, kv::Entry>,
    links: BoxStream<'static, kv::Entry>,
    configs: BoxStream<'static, kv::Entry>,
    statuses: BoxStream<'static, kv::Entry>,
    owners: BoxStream<'static, kv::Entry>,
    controllers: BoxStream<'static, kv::Entry>,
    plans: mpsc::Receiver<PlanQuery>,
    /// Every control-interface request on the lattice, to see what other controllers sent.
    commands: async_nats::Subscriber,
}

impl Inputs {
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        js: &jetstream::Context,
        lattice: &str,
        settings: &LoopSettings,
        manifests: &kv::Store,
        links: &kv::Store,
        configs: &kv::Store,
        statuses: &kv::Store,
        ownership: OwnershipWatches,
        plans: mpsc::Receiver<PlanQuery>,
        client: &async_nats::Client,
    ) -> anyhow::Result<Self> {
        // Each value in these buckets is whole, so a resumed watch needs no reopen marker.
        let watch = |store: &kv::Store, first: kv::Watch| {
            resume::items(resume::kv_watch(client, store.clone(), Some(first), true))
        };
        let bucket = |name: String| async move {
            js.get_key_value(&name)
                .await
                .with_context(|| format!("cannot open KV bucket {name}"))
        };
        let owners = bucket(owners_bucket(lattice)).await?;
        let controllers = bucket(controllers_bucket(lattice)).await?;
        Ok(Self {
            commands: client
                .subscribe(format!("{}.>", ctl::Subjects::new(lattice).prefix()))
                .await?,
            events: event_stream(js, lattice, settings.event_replay).await?,
            manifests: watch(manifests, manifests.watch_with_history(">").await?),
            links: watch(links, links.watch_with_history(">").await?),
            configs: watch(configs, configs.watch_with_history(">").await?),
            statuses: watch(statuses, statuses.watch_with_history(">").await?),
            owners: watch(&owners, ownership.owners),
            controllers: watch(&controllers, ownership.controllers),
            plans,
        })
    }
}

/// A `plan` question for the loop: what deploying `manifest` would issue now.
pub struct PlanQuery {
    pub manifest: Manifest,
    pub reply: oneshot::Sender<PlanResponse>,
}

/// Statuses of the apps of a lattice, shared with the API server.
pub type Statuses = Arc<Mutex<HashMap<String, Status>>>;

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

/// Which apps the next pass looks at.
#[derive(Default)]
struct Dirty {
    all: bool,
    apps: BTreeSet<String>,
    since: Option<Instant>,
}

impl Dirty {
    fn all(&mut self, now: Instant) {
        self.all = true;
        self.since.get_or_insert(now);
    }
    fn app(&mut self, app: &str, now: Instant) {
        if !self.all {
            self.apps.insert(app.to_string());
        }
        self.since.get_or_insert(now);
    }
    fn take(&mut self) -> Option<BTreeSet<String>> {
        self.since = None;
        let apps = std::mem::take(&mut self.apps);
        if std::mem::take(&mut self.all) {
            None
        } else {
            Some(apps)
        }
    }
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
    /// Component and provider ids → the deployed apps that declare them, so an event about
    /// one reaches only the scalers of those apps.
    apps_of_id: HashMap<String, BTreeSet<String>>,
    /// Scalers that left since the last pass (an undeploy, or a version that dropped them),
    /// whose cleanup must run.
    to_clean: Vec<Cleanup>,
    /// Apps undeployed since the last pass, whose status must say so.
    undeployed: BTreeSet<String>,
    statuses: Statuses,
    /// Status writes to the status bucket, done in order by a task of their own so a pass that
    /// changes a thousand statuses does not wait for a thousand KV round trips.
    status_writes: mpsc::UnboundedSender<(String, bytes::Bytes)>,
    ownership: Ownership,
    dirty: Dirty,
    /// Events the stream still held when the last one was read, and how long before that read
    /// it was published: a host is declared dead only when the controller is caught up
    /// ([`caught_up`]), never because a long pass left heartbeats unread.
    events_behind: u64,
    events_lag: Duration,
    /// The last app the previous pass planned.
    pass_cursor: Option<String>,
    /// The NATS client's connection count as last seen: a change means it reconnected.
    connects: u64,
    /// Hosts are to be asked for their inventory once NATS is back.
    rediscover: bool,
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
        status_kv: kv::Store,
        ownership: Ownership,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let connects = client.statistics().connects.load(Ordering::Relaxed);
        Self {
            lattice: lattice.to_string(),
            executor: Executor::new(client.clone(), lattice, settings.command_timeout, tx),
            client,
            runtime,
            settings,
            state: LatticeState::default(),
            outcomes: rx,
            deployed: BTreeMap::new(),
            apps_of_id: HashMap::new(),
            to_clean: Vec::new(),
            undeployed: BTreeSet::new(),
            statuses,
            status_writes: spawn_status_writer(lattice.to_string(), status_kv),
            ownership,
            dirty: Dirty::default(),
            events_behind: 0,
            events_lag: Duration::ZERO,
            pass_cursor: None,
            connects,
            rediscover: false,
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
            statuses: mut status_watch,
            owners: mut owner_watch,
            controllers: mut controller_watch,
            mut plans,
            mut commands,
        } = inputs;
        let ctl_subjects = ctl::Subjects::new(&self.lattice);
        self.catch_up(&mut events).await;
        self.discover_hosts().await;

        let mut tick =
            tokio::time::interval(self.settings.resync_interval.min(Duration::from_secs(1)));
        // Ownership is checked often enough that a takeover follows a lease expiry closely.
        let mut ownership_tick = tokio::time::interval(self.settings.lease / 6);
        ownership_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_full_pass = Instant::now() - self.settings.resync_interval;
        self.dirty.all(Instant::now());
        loop {
            let pass_due = self.dirty.since.map(|t| t + self.settings.debounce);
            tokio::select! {
                // These inputs never end (they reopen themselves), so no branch goes quiet.
                Some(input) = events.next() => {
                    self.on_event_input(input);
                }
                Some(entry) = manifest_watch.next() => {
                    let app = entry.key.clone();
                    self.on_manifest(entry);
                    // The claim waits for the pass, so a burst of deploys makes one
                    // batch of claims rather than one KV round trip each.
                    self.dirty.app(&app, Instant::now());
                }
                Some(entry) = link_watch.next() => {
                    self.on_link(entry);
                }
                Some(entry) = config_watch.next() => {
                    self.on_config(entry);
                    self.dirty.all(Instant::now());
                }
                Some(entry) = status_watch.next() => {
                    self.on_status_entry(entry);
                }
                Some(entry) = owner_watch.next() => {
                    let app = entry.key.clone();
                    self.ownership.on_owner_entry(entry);
                    // A new owner (maybe us) looks at the app at once.
                    self.dirty.app(&app, Instant::now());
                }
                Some(entry) = controller_watch.next() => {
                    self.ownership.on_controller_entry(entry, Instant::now());
                }
                Some(msg) = commands.next() => {
                    let theirs = !self.executor.sent_by_me(msg.headers.as_ref());
                    if let Some((command, origin)) = theirs
                        .then(|| decode(&ctl_subjects, msg.subject.as_str(), &msg.payload))
                        .flatten()
                    {
                        self.executor.observe(command, origin, Instant::now());
                    }
                }
                Some(query) = plans.recv() => {
                    let response = self.plan(query.manifest).await;
                    let _ = query.reply.send(response);
                }
                Some(outcome) = self.outcomes.recv() => {
                    let failed = outcome.result.is_err();
                    let origin = self.executor.origin_of(&outcome.key);
                    self.executor.on_outcome(outcome, Instant::now());
                    if let (true, Some(origin)) = (failed, origin) {
                        self.dirty.app(&origin.app, Instant::now());
                    }
                }
                _ = ownership_tick.tick() => {
                    self.claim_apps().await;
                }
                _ = tick.tick() => {
                    // Read what already arrived before judging silence.
                    while let Some(Some(input)) = events.next().now_or_never() {
                        self.on_event_input(input);
                    }
                    self.check_connection().await;
                    let now = Instant::now();
                    // Hosts cannot be heard while NATS is away: silence then says nothing.
                    let dead = if caught_up(self.events_behind, self.events_lag) && self.connected() {
                        self.state.expire_hosts(self.settings.host_timeout, now)
                    } else {
                        Vec::new()
                    };
                    for host in &dead {
                        tracing::warn!(lattice = %self.lattice, host, "host missed its heartbeats; rescheduling what it ran");
                    }
                    let generation = self.runtime.generation();
                    if !dead.is_empty()
                        || generation != self.plugin_generation
                        || now.duration_since(last_full_pass) >= self.settings.resync_interval
                    {
                        self.plugin_generation = generation;
                        last_full_pass = now;
                        self.dirty.all(now);
                    }
                    let busy: Vec<String> =
                        self.executor.in_flight_origins().map(|o| o.app.clone()).collect();
                    for app in busy {
                        self.dirty.app(&app, now);
                    }
                }
                _ = sleep_until(pass_due) => {
                    let started = Instant::now();
                    self.claim_apps().await;
                    let apps = self.dirty.take();
                    self.pass(apps).await;
                    // No event was read meanwhile: that time is nobody's silence.
                    let now = Instant::now();
                    self.state.excuse(now.duration_since(started), now);
                }
                else => return Ok(()),
            }
        }
    }

    /// Applies the events replayed from the stream, up to the present, before the inventory
    /// queries (which are newer, so they win).
    async fn catch_up(&mut self, events: &mut BoxStream<'static, Resumed<EventMessage>>) {
        let mut replayed = 0usize;
        // Nothing within the wait means nothing to replay (or an idle lattice).
        while let Ok(Some(input)) =
            tokio::time::timeout(Duration::from_millis(500), events.next()).await
        {
            // Discovery follows the replay anyway.
            let Resumed::Item(msg) = input else { continue };
            replayed += 1;
            self.on_event(&msg);
            if msg.pending == 0 {
                break;
            }
        }
        tracing::info!(lattice = %self.lattice, replayed, "replayed lattice events");
    }

    fn on_event_input(&mut self, input: Resumed<EventMessage>) {
        match input {
            Resumed::Item(msg) => self.on_event(&msg),
            Resumed::Reopened => self.after_outage("the event stream was reopened"),
        }
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Notices a NATS reconnect (e.g. a nats-server restart) that the event stream has not
    /// reported yet, and asks the hosts for their inventory once after an outage.
    async fn check_connection(&mut self) {
        let connects = self.client.statistics().connects.load(Ordering::Relaxed);
        if connects != self.connects {
            self.connects = connects;
            // Once per outage: the event stream may have said so already.
            if !self.rediscover {
                self.after_outage("the NATS connection was re-established");
            }
        }
        if self.rediscover && self.connected() {
            self.rediscover = false;
            self.discover_hosts().await;
        }
    }

    /// After NATS was away, the heartbeats sent meanwhile are lost: give every known host a
    /// full host timeout from now to be heard again rather than declaring them all dead, and
    /// ask them for their inventory (what ran while we could not hear).
    fn after_outage(&mut self, why: &str) {
        let now = Instant::now();
        tracing::info!(lattice = %self.lattice, hosts = self.state.hosts.len(), "{why}: hosts get a fresh heartbeat timeout and are asked for their inventory");
        for host in self.state.hosts.values_mut() {
            host.last_seen = host.last_seen.max(now);
        }
        self.rediscover = true;
        self.dirty.all(now);
    }

    /// Applies one lattice event and marks the apps it concerns.
    fn on_event(&mut self, msg: &EventMessage) {
        self.events_behind = msg.pending;
        self.events_lag = msg.age;
        let Ok(cloud_event) = serde_json::from_slice::<CloudEvent>(&msg.payload) else {
            tracing::debug!(lattice = %self.lattice, "ignoring a message that is not a CloudEvent");
            return;
        };
        let event = match cloud_event.decode() {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(lattice = %self.lattice, kind = cloud_event.kind(), "unreadable event: {e}");
                return;
            }
        };
        let now = Instant::now();
        let at = now.checked_sub(msg.age).unwrap_or(now);
        self.executor.on_event(&event, now);
        match self.state.apply(&cloud_event.source, &event, at) {
            Touched::Nothing => {}
            Touched::Everything => self.dirty.all(now),
            Touched::Ids(ids) => self.mark_ids(ids.iter().map(String::as_str), now),
        }
    }

    fn mark_ids<'a>(&mut self, ids: impl Iterator<Item = &'a str>, now: Instant) {
        for id in ids {
            if let Some(apps) = self.apps_of_id.get(id) {
                for app in apps {
                    self.dirty.app(app, now);
                }
            }
        }
    }

    fn index(&mut self, app: &str, manifest: &Manifest, add: bool) {
        for component in &manifest.spec.components {
            let id = manifest.component_id(component);
            if add {
                self.apps_of_id
                    .entry(id)
                    .or_default()
                    .insert(app.to_string());
            } else if let Some(apps) = self.apps_of_id.get_mut(&id) {
                apps.remove(app);
                if apps.is_empty() {
                    self.apps_of_id.remove(&id);
                }
            }
        }
    }

    fn on_manifest(&mut self, entry: kv::Entry) {
        let app: Option<StoredApp> = match entry.operation {
            kv::Operation::Put => serde_json::from_slice(&entry.value).ok(),
            _ => None,
        };
        let left_running = app.as_ref().is_some_and(StoredApp::left_running);
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
                self.undeployed.remove(&app);
                self.index(&app, &manifest, true);
                if let Some(previous) = self.deployed.insert(app.clone(), manifest) {
                    let gone: BTreeSet<String> = scaler_ids(&previous)
                        .into_iter()
                        .filter(|id| !kept.contains(id))
                        .collect();
                    self.index(&app, &previous, false);
                    let current = self.deployed[&app].clone();
                    self.index(&app, &current, true);
                    self.schedule_cleanup(app, previous, gone);
                }
            }
            None => {
                if let Some(previous) = self.deployed.remove(&app) {
                    self.index(&app, &previous, false);
                    // A non-destructive undeploy stops managing and removes nothing.
                    if !left_running {
                        let all = scaler_ids(&previous);
                        self.schedule_cleanup(app.clone(), previous, all);
                    }
                    self.undeployed.insert(app.clone());
                }
                let mut statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
                statuses.insert(
                    app,
                    Status::new(StatusInfo::new(StatusType::Undeployed, ""), Vec::new()),
                );
            }
        }
    }

    fn on_status_entry(&mut self, entry: kv::Entry) {
        let mut statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
        match entry.operation {
            kv::Operation::Put => {
                if let Ok(status) = serde_json::from_slice::<Status>(&entry.value) {
                    statuses.insert(entry.key, status);
                }
            }
            _ => {
                statuses.remove(&entry.key);
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
        let now = Instant::now();
        let touched: Vec<String> = match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<Link>(&entry.value) {
                Ok(link) => {
                    let ids = vec![link.source_id.clone(), link.target.clone()];
                    self.state.links.insert(link.key(), link);
                    ids
                }
                Err(_) => Vec::new(),
            },
            _ => match self.state.links.remove(&entry.key) {
                Some(link) => vec![link.source_id, link.target],
                None => Vec::new(),
            },
        };
        self.mark_ids(touched.iter().map(String::as_str), now);
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

    /// Claims the apps that need an owner: deployed ones, and undeployed ones with cleanup
    /// or a status still to publish.
    async fn claim_apps(&mut self) {
        let mut wanted: BTreeSet<String> = self.deployed.keys().cloned().collect();
        wanted.extend(self.to_clean.iter().map(|c| c.app.clone()));
        wanted.extend(self.undeployed.iter().cloned());
        let wanted: Vec<String> = wanted.into_iter().collect();
        let won = self.ownership.claim(&wanted, Instant::now()).await;
        for app in won {
            self.dirty.app(&app, Instant::now());
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
        let ids: Vec<String> = hosts
            .iter()
            .filter_map(|reply| serde_json::from_slice::<CtlResponse<ctl::Host>>(reply).ok())
            .filter_map(|resp| resp.response.map(|h| h.id))
            .collect();
        // Many hosts answer at once; ask a bounded number of them at a time.
        let client = &self.client;
        let subjects = &subjects;
        let inventories: Vec<HostInventory> = futures::stream::iter(ids)
            .map(|id| async move {
                let msg = client
                    .request(subjects.host_get(&id), "".into())
                    .await
                    .ok()?;
                serde_json::from_slice::<CtlResponse<HostInventory>>(&msg.payload)
                    .ok()?
                    .response
            })
            .buffer_unordered(64)
            .filter_map(std::future::ready)
            .collect()
            .await;
        let now = Instant::now();
        for inventory in &inventories {
            self.state.apply_inventory(inventory, now);
        }
        tracing::info!(lattice = %self.lattice, hosts = self.state.hosts.len(), "discovered hosts");
    }

    /// The lattice as plugins see it now: the state, with the commands in flight taken as done.
    fn snapshot(&mut self, now: Instant) -> LatticeSnapshot {
        // While events are unread, an unconfirmed command may well be done: no timeouts then.
        self.executor.settle(
            &self.state,
            now,
            caught_up(self.events_behind, self.events_lag),
        );
        let mut snapshot = self
            .state
            .snapshot(now.duration_since(self.started).as_millis() as u64);
        let unknown = Origin {
            app: String::new(),
            scaler: String::new(),
        };
        for (command, origin) in self.executor.in_flight() {
            overlay(&mut snapshot, command, origin.unwrap_or(&unknown));
        }
        snapshot
    }

    /// One reconcile pass over the dirty apps this controller owns (`None`: every app).
    async fn pass(&mut self, dirty: Option<BTreeSet<String>>) {
        let now = Instant::now();
        let snapshot = self.snapshot(now);
        let in_scope = |app: &str| dirty.as_ref().is_none_or(|d| d.contains(app));
        let mut apps: Vec<(String, Manifest)> = self
            .deployed
            .iter()
            .filter(|(name, _)| in_scope(name) && self.ownership.owns(name, now))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Start after the last app the previous pass planned, so that when passes run out of
        // budget every app gets its turn.
        if let Some(cursor) = &self.pass_cursor {
            let split = apps.partition_point(|(name, _)| name <= cursor);
            apps.rotate_left(split);
        }
        // Cleanups run at the owner; others forget them once someone else owns the app.
        let (to_clean, kept): (Vec<Cleanup>, Vec<Cleanup>) = std::mem::take(&mut self.to_clean)
            .into_iter()
            .partition(|c| self.ownership.owns(&c.app, now));
        self.to_clean = kept
            .into_iter()
            .filter(|c| {
                self.ownership
                    .owner_of(&c.app)
                    .is_none_or(|o| o == self.ownership.id())
            })
            .collect();
        let mut planned_apps: BTreeSet<String> = apps.iter().map(|(n, _)| n.clone()).collect();
        planned_apps.extend(to_clean.iter().map(|c| c.app.clone()));
        let runtime = Arc::clone(&self.runtime);
        let lattice = self.lattice.clone();
        // Plugin calls are synchronous CPU work with their own deadlines: keep them off the
        // async workers.
        let planned = tokio::task::spawn_blocking(move || {
            let mut snap = Arc::new(snapshot);
            // Cleanups first: what they remove frees room for the apps planned after them.
            let cleanups = to_clean
                .iter()
                .map(|cleanup| {
                    let planned = cleanup_scalers(&runtime, cleanup, &snap);
                    for (origin, commands) in &planned {
                        for c in commands {
                            overlay(Arc::make_mut(&mut snap), c, origin);
                        }
                    }
                    planned
                })
                .collect::<Vec<_>>();
            let started = Instant::now();
            let mut done = Vec::with_capacity(apps.len());
            let mut deferred = Vec::new();
            for (name, manifest) in apps {
                // A pass that ran past its budget leaves the rest for the next one, so the
                // loop reads events (heartbeats, command effects) in between.
                if started.elapsed() > PASS_BUDGET {
                    deferred.push(name);
                    continue;
                }
                let span = tracing::info_span!("reconcile", lattice = %lattice, app = %name);
                let _guard = span.enter();
                let planned = plan_app(&runtime, &manifest, &snap);
                // The next app sees this one's commands as done (plugin calls keep no handle
                // on the snapshot, so this does not copy it).
                for p in &planned {
                    for c in &p.commands {
                        overlay(Arc::make_mut(&mut snap), c, &p.origin);
                    }
                }
                done.push((name, planned));
            }
            (done, cleanups, deferred)
        })
        .await;
        let Ok((apps, cleanups, deferred)) = planned else {
            tracing::error!(lattice = %self.lattice, "a reconcile pass panicked; retrying on the next tick");
            self.dirty.all(Instant::now());
            return;
        };

        for app in &deferred {
            planned_apps.remove(app);
            self.dirty.app(app, Instant::now());
        }
        if let Some((last, _)) = apps.last() {
            self.pass_cursor = Some(last.clone());
        }
        if !deferred.is_empty() {
            tracing::debug!(lattice = %self.lattice, planned = apps.len(), deferred = deferred.len(), "pass over budget; the rest follows");
        }
        let mut wanted: HashMap<String, Command> = HashMap::new();
        for planned in &cleanups {
            for (origin, commands) in planned {
                for c in commands {
                    wanted.insert(command_key(c), c.clone());
                }
                self.executor.issue(origin, commands.clone(), now);
            }
        }
        let mut results = Vec::with_capacity(apps.len());
        for (app, scalers) in apps {
            let mut statuses = Vec::with_capacity(scalers.len());
            for planned in scalers {
                for c in &planned.commands {
                    wanted.insert(command_key(c), c.clone());
                }
                self.executor.issue(&planned.origin, planned.commands, now);
                statuses.push((
                    planned.origin,
                    planned.status_id,
                    planned.trait_type,
                    planned.component,
                    planned.status,
                ));
            }
            results.push((app, statuses));
        }
        // Plugins saw commands in flight as done; a scaler is deployed only once the lattice
        // shows them.
        let mut in_flight: HashMap<&Origin, usize> = HashMap::new();
        for origin in self.executor.in_flight_origins() {
            *in_flight.entry(origin).or_default() += 1;
        }
        let mut published = Vec::with_capacity(results.len());
        for (app, scalers) in results {
            let mut scaler_statuses = Vec::with_capacity(scalers.len());
            for (origin, id, kind, name, status) in scalers {
                let pending = in_flight.get(&origin).copied().unwrap_or(0);
                let info = match self.executor.failure_of(&origin) {
                    Some(failure) => StatusInfo::new(StatusType::Failed, failure.reason.clone()),
                    None if pending > 0 && status.status_type == StatusType::Deployed => {
                        StatusInfo::new(
                            StatusType::Reconciling,
                            format!("{pending} command(s) not carried out yet"),
                        )
                    }
                    None => status,
                };
                scaler_statuses.push(ScalerStatus {
                    id,
                    kind,
                    name,
                    info,
                });
            }
            let mut status = Status::aggregate(scaler_statuses);
            // Which version this status is about: a client that just deployed another version
            // must not take this one's "deployed" for its own.
            if let Some(manifest) = self.deployed.get(&app) {
                status.version = manifest.version().to_string();
            }
            published.push((app, status));
        }
        for (app, status) in published {
            self.publish_status(&app, status).await;
        }
        self.executor
            .forget_failures(&wanted, &planned_apps, &self.state);

        // Undeployed apps: say so, and give the app up once nothing is left to clean.
        let undeployed = std::mem::take(&mut self.undeployed);
        for app in undeployed {
            if self.deployed.contains_key(&app) {
                continue;
            }
            let owned = self.ownership.owns(&app, now);
            if owned {
                let status = Status::new(StatusInfo::new(StatusType::Undeployed, ""), Vec::new());
                self.publish_status_always(&app, status).await;
            } else if self.ownership.owner_of(&app).is_none() {
                // Not claimed yet: keep it until someone owns it.
                self.undeployed.insert(app);
                continue;
            }
            if owned && !self.to_clean.iter().any(|c| c.app == app) {
                self.ownership.release(&app).await;
            }
        }
    }

    /// Publishes an app's status when it changed.
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
            self.publish_status_always(app, status).await;
        }
    }

    async fn publish_status_always(&self, app: &str, status: Status) {
        tracing::info!(lattice = %self.lattice, app, status = ?status.info.status_type, message = %status.info.message, "app status");
        self.statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(app.to_string(), status.clone());
        let subject = trellis_lattice::api::Subjects::new(&self.lattice).status_updates(app);
        if let Ok(body) = serde_json::to_vec(&status) {
            let body: bytes::Bytes = body.into();
            let _ = self.client.publish(subject, body.clone()).await;
            let _ = self.status_writes.send((app.to_string(), body));
        }
    }

    /// What deploying `manifest` would issue now: the same plugin calls as a pass, with the
    /// commands returned instead of sent.
    async fn plan(&mut self, manifest: Manifest) -> PlanResponse {
        let now = Instant::now();
        let snapshot = Arc::new(self.snapshot(now));
        let name = manifest.name().to_string();
        let version = manifest.version().to_string();
        // Scalers the deployed version has and this one drops would be cleaned up.
        let cleanup = self.deployed.get(&name).and_then(|current| {
            let kept = scaler_ids(&manifest);
            let gone: BTreeSet<String> = scaler_ids(current)
                .into_iter()
                .filter(|id| !kept.contains(id))
                .collect();
            (!gone.is_empty()).then(|| Cleanup {
                app: name.clone(),
                manifest: current.clone(),
                scalers: gone,
            })
        });
        let runtime = Arc::clone(&self.runtime);
        let planned = tokio::task::spawn_blocking(move || {
            let scalers = plan_app(&runtime, &manifest, &snapshot);
            let cleanups = cleanup
                .map(|c| cleanup_scalers(&runtime, &c, &snapshot))
                .unwrap_or_default();
            (scalers, cleanups)
        })
        .await;
        let Ok((scalers, cleanups)) = planned else {
            return PlanResponse {
                result: GetResult::Error,
                message: "a plugin call panicked while planning; see the controller log".into(),
                name,
                version,
                commands: Vec::new(),
                scalers: Vec::new(),
            };
        };
        let subjects = ctl::Subjects::new(&self.lattice);
        let mut commands = Vec::new();
        let mut add = |origin: &Origin, command: &Command| {
            let (subject, body) = encode(&subjects, command, origin);
            commands.push(PlannedCommand {
                scaler: origin.scaler.clone(),
                subject,
                body: serde_json::from_slice(&body).unwrap_or_default(),
                held: self.executor.holds(command, now),
            });
        };
        let mut statuses = Vec::new();
        for planned in &scalers {
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
        for (origin, cmds) in &cleanups {
            for c in cmds {
                add(origin, c);
            }
        }
        PlanResponse {
            result: GetResult::Success,
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
}

/// Writes statuses to the status bucket in the order they come.
fn spawn_status_writer(
    lattice: String,
    status_kv: kv::Store,
) -> mpsc::UnboundedSender<(String, bytes::Bytes)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, bytes::Bytes)>();
    tokio::spawn(async move {
        while let Some((app, body)) = rx.recv().await {
            if let Err(e) = status_kv.put(&app, body).await {
                tracing::warn!(lattice = %lattice, app, "cannot store the app's status: {e}");
            }
        }
    });
    tx
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caught_up_when_nothing_is_left_or_the_last_event_is_fresh() {
        assert!(caught_up(0, Duration::from_secs(30)));
        // A heartbeat published a moment after the one just read.
        assert!(caught_up(1, Duration::from_millis(20)));
        // Behind after a long pass: thousands left, the last read seconds old.
        assert!(!caught_up(5_000, Duration::from_secs(3)));
    }
}
