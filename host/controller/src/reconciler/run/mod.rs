//! The reconcile loop of one lattice: every input arrives in one `select!` in [`Reconciler::run`],
//! updates what the loop knows and marks the apps it concerns dirty; a short debounce later,
//! [`Reconciler::pass`] plans those apps and hands their commands to the executor.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use futures::{FutureExt as _, StreamExt};
use tokio::sync::mpsc;
use trellis_lattice::api::{GetResult, PlanResponse, Status, StatusInfo, StatusType};
use trellis_lattice::ctl;
use trellis_lattice::{ErrorCode, Manifest};
use trellis_runtime::bindings::Command;
use trellis_runtime::{LatticeSnapshot, Runtime};

use super::deployed::DeployedApps;
use super::dirty::Dirty;
use super::discovery;
use super::inputs::{caught_up, Inputs, Query};
use super::planning::{cleanup_scalers, plan_app, plan_response, Memos};
use super::settings::LoopSettings;
use super::status::{app_statuses, StatusPublisher, Statuses};
use super::sweep::{self, SWEEP_SCALER};
use crate::commands::{command_key, decode, overlay, Origin};
use crate::cost::{self, Work};
use crate::executor::{Executor, Outcome};
use crate::health::Health;
use crate::history::History;
use crate::ownership::Ownership;
use crate::state::LatticeState;
use crate::store::ManifestStore;

mod intake;
mod report;
mod rollouts;

/// The soonest and latest a scaler's `recheck-after-ms` is honoured: sooner would make a
/// pass of every tick for one app; an hour is as long as any schedule needs between looks
/// (and longer is still met by the periodic resync, which looks at every app).
const MIN_RECHECK: Duration = Duration::from_millis(100);
const MAX_RECHECK: Duration = Duration::from_secs(3600);

/// How often apps with commands in flight are looked at again while nothing else happens.
const BUSY_LOOK_INTERVAL: Duration = Duration::from_secs(1);

/// How long one pass may spend in plugin calls before leaving the remaining apps to the next
/// pass: the loop must keep reading events, or heartbeats go unread and hosts look dead.
const PASS_BUDGET: Duration = Duration::from_millis(250);

/// The reconcile loop of one lattice, with all it keeps between two inputs.
pub struct Reconciler {
    lattice: String,
    client: async_nats::Client,
    runtime: Arc<Runtime>,
    settings: LoopSettings,
    state: LatticeState,
    executor: Executor,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    apps: DeployedApps,
    status: StatusPublisher,
    ownership: Ownership,
    dirty: Dirty,
    /// Events the stream still held when the last one was read, and how long before that read
    /// it was published: a host is declared dead only when the controller is caught up
    /// ([`caught_up`]), never because a long pass left heartbeats unread.
    events_behind: u64,
    events_lag: Duration,
    /// The last app the previous pass planned.
    pass_cursor: Option<String>,
    /// Where the next placement shortlist starts (`trellis_runtime::placement`): carried from
    /// pass to pass so that rankings keep walking the lattice rather than restart at its
    /// first hosts.
    rotation: u64,
    /// The NATS client's connection count as last seen: a change means it reconnected.
    connects: u64,
    /// Hosts are to be asked for their inventory once NATS is back.
    rediscover: bool,
    plugin_generation: u64,
    started: Instant,
    /// When the next sweep of orphaned instances is due (`sweep.rs`).
    next_sweep: Instant,
    /// Recent load of hosts and components, for `hosts.get`.
    history: History,
    /// What each scaler asked to get back on its next call.
    memos: Arc<Memos>,
    /// Where rollouts' steps are written.
    store: ManifestStore,
}

impl Reconciler {
    pub fn new(
        lattice: &str,
        client: async_nats::Client,
        runtime: Arc<Runtime>,
        settings: LoopSettings,
        (statuses, status_kv): (Statuses, kv::Store),
        ownership: Ownership,
        store: ManifestStore,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let connects = client.statistics().connects.load(Ordering::Relaxed);
        let health = settings.health;
        Self {
            lattice: lattice.to_string(),
            executor: Executor::new(client.clone(), lattice, settings.command_timeout, tx),
            status: StatusPublisher::new(lattice, client.clone(), statuses, status_kv),
            client,
            runtime,
            settings,
            state: LatticeState::new(health),
            outcomes: rx,
            apps: DeployedApps::default(),
            ownership,
            dirty: Dirty::default(),
            events_behind: 0,
            events_lag: Duration::ZERO,
            pass_cursor: None,
            rotation: 0,
            connects,
            rediscover: false,
            plugin_generation: 0,
            started: Instant::now(),
            next_sweep: Instant::now(),
            history: History::default(),
            memos: Arc::default(),
            store,
        }
    }

    /// Runs until the NATS connection's subscriptions end.
    pub async fn run(mut self, inputs: Inputs) -> anyhow::Result<()> {
        let Inputs {
            mut events,
            manifests: mut manifest_watch,
            manifests_empty,
            links: mut link_watch,
            configs: mut config_watch,
            statuses: mut status_watch,
            owners: mut owner_watch,
            controllers: mut controller_watch,
            mut queries,
            mut commands,
        } = inputs;
        let ctl_subjects = ctl::Subjects::new(&self.lattice);
        if manifests_empty {
            self.apps.on_empty_store();
        }
        self.catch_up(&mut events).await;
        self.discover_hosts().await;

        // Silence is judged on each tick: often enough that a dead host is noticed within a
        // quarter second of its timeout (`trellis_lattice::liveness`).
        let mut tick = tokio::time::interval(
            self.settings
                .resync_interval
                .min(Duration::from_millis(250)),
        );
        // Ownership is checked often enough that a takeover follows a lease expiry closely.
        let mut ownership_tick = tokio::time::interval(self.settings.lease / 6);
        ownership_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_full_pass = Instant::now() - self.settings.resync_interval;
        let mut last_busy_look = Instant::now();
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
                    self.status.on_entry(entry);
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
                Some(query) = queries.recv() => match query {
                    Query::Plan { manifest, reply } => {
                        let _ = reply.send(self.plan(manifest).await);
                    }
                    Query::Hosts { request, reply } => {
                        let _ = reply.send(self.hosts_report(&request, Instant::now()));
                    }
                    Query::Snapshot { reply } => {
                        let snapshot = self.snapshot(Instant::now());
                        let _ = reply.send(trellis_runtime::LatticeDocument::of(&snapshot));
                    }
                },
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
                    // Hosts cannot be heard while NATS is away: silence then says nothing. Nor
                    // is what runs known then, which the sweep acts on.
                    let listening = caught_up(self.events_behind, self.events_lag) && self.connected();
                    let dead = if listening {
                        self.state.judge_hosts(self.settings.host_timeout, now)
                    } else {
                        Vec::new()
                    };
                    if listening && now >= self.next_sweep && self.apps.store_read() {
                        self.sweep().await;
                    }
                    for host in &dead {
                        tracing::warn!(lattice = %self.lattice, host, "host missed its heartbeats; rescheduling what it ran");
                    }
                    self.report_health_changes().await;
                    self.dirty.rechecks_due(now);
                    self.history.sample(&self.state, now);
                    let generation = self.runtime.generation();
                    if !dead.is_empty()
                        || generation != self.plugin_generation
                        || now.duration_since(last_full_pass) >= self.settings.resync_interval
                    {
                        self.plugin_generation = generation;
                        last_full_pass = now;
                        self.dirty.all(now);
                    }
                    // Apps with commands in flight get a look each second (as before the
                    // tick was made finer for judging silence).
                    if now.duration_since(last_busy_look) >= BUSY_LOOK_INTERVAL {
                        last_busy_look = now;
                        let busy: Vec<String> =
                            self.executor.in_flight_origins().map(|o| o.app.clone()).collect();
                        for app in busy {
                            self.dirty.app(&app, now);
                        }
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

    /// Logs and publishes the changes of hosts' health since the last call.
    async fn report_health_changes(&mut self) {
        for mut change in self.state.take_health_changes() {
            if change.friendly_name.is_empty() {
                if let Some(host) = self.state.hosts.get(&change.host_id) {
                    change.friendly_name = host.friendly_name.clone();
                }
            }
            let c = &change;
            if c.to == Health::Healthy {
                tracing::info!(lattice = %self.lattice, host = %c.host_id, name = %c.friendly_name, from = %c.from, "host is healthy again: {}", c.reason);
            } else {
                tracing::warn!(lattice = %self.lattice, host = %c.host_id, name = %c.friendly_name, from = %c.from, to = %c.to, "host health changed: {}", c.reason);
            }
            let controller = self.ownership.id();
            crate::notify::host_health_changed(&self.client, &self.lattice, &controller, c).await;
        }
    }

    /// Claims the apps that need an owner: deployed ones, and undeployed ones with cleanup
    /// or a status still to publish.
    async fn claim_apps(&mut self) {
        let wanted = self.apps.wanted();
        let won = self.ownership.claim(&wanted, Instant::now()).await;
        for app in won {
            // An app won for its orphans has them stopped at once, not a sweep interval later.
            if self.apps.orphaned.contains(&app) {
                self.next_sweep = Instant::now();
            }
            self.dirty.app(&app, Instant::now());
        }
    }

    /// Stops the orphaned instances (`sweep.rs`) of the apps this controller owns, and claims
    /// the others' apps so that exactly one controller stops them. An app with no orphans left
    /// is given up unless it is wanted for more. A stop that fails is retried by the next sweep,
    /// which finds the instance still running.
    async fn sweep(&mut self) {
        let orphans = sweep::orphans(&self.state, &self.apps);
        let apps: BTreeSet<String> = orphans.iter().map(|o| o.app.clone()).collect();
        let cleared: Vec<String> = self.apps.orphaned.difference(&apps).cloned().collect();
        self.apps.orphaned = apps;
        self.claim_apps().await;
        let now = Instant::now();
        self.next_sweep = now + self.settings.sweep_interval;
        for orphan in orphans {
            if !self.ownership.owns(&orphan.app, now) {
                continue;
            }
            let origin = Origin {
                app: orphan.app.clone(),
                scaler: SWEEP_SCALER.into(),
            };
            // Held back (0) while a stop is in flight or backing off after a failure.
            if self
                .executor
                .issue(&origin, vec![orphan.command], &self.state, now)
                > 0
            {
                tracing::info!(lattice = %self.lattice, app = %orphan.app, host = %orphan.host, id = %orphan.id, why = %orphan.why, "sweep: stopping an orphaned instance");
            }
        }
        let wanted = self.apps.wanted();
        for app in cleared {
            if self.ownership.owns(&app, now) && !wanted.contains(&app) {
                self.ownership.release(&app).await;
            }
        }
    }

    /// Asks every host for its inventory, so a restarted controller knows the lattice at once
    /// instead of after the next heartbeats.
    async fn discover_hosts(&mut self) {
        let inventories = match discovery::inventories(&self.client, &self.lattice).await {
            Ok(inventories) => inventories,
            Err(e) => {
                tracing::warn!(lattice = %self.lattice, "host discovery failed: {e}");
                return;
            }
        };
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
        snapshot.set_rotation(self.rotation);
        snapshot
    }

    /// One reconcile pass over the dirty apps this controller owns (`None`: every app).
    async fn pass(&mut self, dirty: Option<BTreeSet<String>>) {
        let now = Instant::now();
        let resync = dirty.is_none();
        let (snapshot, snapshot_cpu) = cost::measure(Work::Snapshot, || self.snapshot(now));
        let in_scope = |app: &str| dirty.as_ref().is_none_or(|d| d.contains(app));
        let mut apps: Vec<(String, Manifest)> = self
            .apps
            .manifests
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
        let to_clean = self.apps.take_cleanups(&self.ownership, now);
        let mut planned_apps: BTreeSet<String> = apps.iter().map(|(n, _)| n.clone()).collect();
        planned_apps.extend(to_clean.iter().map(|c| c.app.clone()));
        let runtime = Arc::clone(&self.runtime);
        let memos = Arc::clone(&self.memos);
        let lattice = self.lattice.clone();
        // Plugin calls are synchronous CPU work with their own deadlines: keep them off the
        // async workers.
        let planned = tokio::task::spawn_blocking(move || {
            let cpu_started = cost::thread_cpu();
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
                let planned = plan_app(&runtime, &manifest, &snap, &memos);
                // The next app sees this one's commands as done (plugin calls keep no handle
                // on the snapshot, so this does not copy it).
                for p in &planned {
                    for c in &p.commands {
                        overlay(Arc::make_mut(&mut snap), c, &p.origin);
                    }
                }
                done.push((name, planned));
            }
            let plugins_cpu = cost::thread_cpu().saturating_sub(cpu_started);
            cost::add(Work::Plugins, plugins_cpu);
            (done, cleanups, deferred, snap.rotation(), plugins_cpu)
        })
        .await;
        let Ok((apps, cleanups, deferred, rotation, plugins_cpu)) = planned else {
            tracing::error!(lattice = %self.lattice, "a reconcile pass panicked; retrying on the next tick");
            self.dirty.all(Instant::now());
            return;
        };
        self.rotation = rotation;

        for app in &deferred {
            planned_apps.remove(app);
            self.dirty.app(app, Instant::now());
        }
        if let Some((last, _)) = apps.last() {
            self.pass_cursor = Some(last.clone());
        }
        let now = Instant::now();
        let memos = Arc::make_mut(&mut self.memos);
        for (app, planned) in &apps {
            if let Some(delay) = planned.iter().filter_map(|p| p.recheck_after).min() {
                self.dirty
                    .recheck(app, now + delay.clamp(MIN_RECHECK, MAX_RECHECK));
            }
            for p in planned {
                let key = (app.clone(), p.status_id.clone());
                match &p.memo {
                    Some(memo) => memos.insert(key, memo.clone()),
                    None => memos.remove(&key),
                };
            }
        }
        if resync {
            // Apps no longer deployed, or owned by another controller now, forget.
            let (deployed, ownership) = (&self.apps.manifests, &self.ownership);
            memos.retain(|(app, _), _| deployed.contains_key(app) && ownership.owns(app, now));
        }
        if !deferred.is_empty() {
            tracing::debug!(lattice = %self.lattice, planned = apps.len(), deferred = deferred.len(), "pass over budget; the rest follows");
        }
        let commands_started = cost::thread_cpu();
        let planned_count = apps.len();
        let mut wanted: HashMap<String, Command> = HashMap::new();
        for planned in &cleanups {
            for (origin, commands) in planned {
                for c in commands {
                    wanted.insert(command_key(c), c.clone());
                }
                self.executor
                    .issue(origin, commands.clone(), &self.state, now);
            }
        }
        let mut results = Vec::with_capacity(apps.len());
        for (app, scalers) in apps {
            let mut statuses = Vec::with_capacity(scalers.len());
            for mut planned in scalers {
                for c in &planned.commands {
                    wanted.insert(command_key(c), c.clone());
                }
                let commands = std::mem::take(&mut planned.commands);
                self.executor
                    .issue(&planned.origin, commands, &self.state, now);
                statuses.push(planned);
            }
            results.push((app, statuses));
        }
        let manifests = &self.apps.manifests;
        let version_of = |app: &str| manifests.get(app).map(|m| m.version().to_string());
        let statuses = app_statuses(results, &self.executor, version_of);
        let commands_cpu = cost::thread_cpu().saturating_sub(commands_started);
        cost::add(Work::Commands, commands_cpu);
        for (app, status) in statuses {
            self.status.publish(&app, status).await;
        }
        self.drive_rollouts(&planned_apps).await;
        // A resync whose scalers all found nothing to do: what settled apps cost.
        if resync && wanted.is_empty() && deferred.is_empty() && planned_count > 0 {
            cost::record_quiet_resync(cost::PassCost {
                apps: planned_count,
                wall: now.elapsed(),
                snapshot: snapshot_cpu,
                plugins: plugins_cpu,
                commands: commands_cpu,
            });
        }
        self.executor
            .forget_failures(&wanted, &planned_apps, &self.state);

        // Undeployed apps: say so, and give the app up once nothing is left to clean.
        let undeployed = std::mem::take(&mut self.apps.undeployed);
        for app in undeployed {
            if self.apps.manifests.contains_key(&app) {
                continue;
            }
            let owned = self.ownership.owns(&app, now);
            if owned {
                let status = Status::new(StatusInfo::new(StatusType::Undeployed, ""), Vec::new());
                self.status.publish_always(&app, status).await;
            } else if self.ownership.owner_of(&app).is_none() {
                // Not claimed yet: keep it until someone owns it.
                self.apps.undeployed.insert(app);
                continue;
            }
            if owned && !self.apps.to_clean.iter().any(|c| c.app == app) {
                self.ownership.release(&app).await;
            }
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
        let cleanup = self.apps.cleanup_for(&manifest);
        let runtime = Arc::clone(&self.runtime);
        let memos = Arc::clone(&self.memos);
        let planned = tokio::task::spawn_blocking(move || {
            let scalers = plan_app(&runtime, &manifest, &snapshot, &memos);
            let cleanups = cleanup
                .map(|c| cleanup_scalers(&runtime, &c, &snapshot))
                .unwrap_or_default();
            (scalers, cleanups)
        })
        .await;
        let Ok((scalers, cleanups)) = planned else {
            return PlanResponse {
                result: GetResult::Error,
                code: Some(ErrorCode::Unavailable),
                message: "a plugin call panicked while planning; see the controller log".into(),
                name,
                version,
                commands: Vec::new(),
                scalers: Vec::new(),
            };
        };
        let subjects = ctl::Subjects::new(&self.lattice);
        let executor = &self.executor;
        plan_response(name, version, &scalers, &cleanups, &subjects, |command| {
            executor.holds(command, now)
        })
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
