//! What the controller knows of a lattice: hosts and what runs on them (from events and
//! inventory), links and configs (from the lattice's KV buckets). It turns that into the
//! immutable [`LatticeSnapshot`] plugins read. Facts only: what a command will change, and
//! whether the state shows it done, is in [`crate::commands`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use trellis_bus::link_specs::LinkTable;
use trellis_lattice::ctl::{
    ComponentDescription, ComponentTraffic, HostInventory, HostResources, Link, ProviderDescription,
};
use trellis_lattice::event::Event;
use trellis_runtime::bindings::{ComponentInstance, HostInfo, Pair, ProviderInstance};
use trellis_runtime::{HostDirectory, HostVitals, LatticeSnapshot, Traffic};

use crate::health::{Health, HealthChange, HealthThresholds, HostHealth};

#[derive(Debug, Clone, PartialEq)]
pub struct ComponentState {
    pub image: String,
    pub count: u32,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProviderState {
    pub image: String,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct HostState {
    pub friendly_name: String,
    pub labels: BTreeMap<String, String>,
    pub uptime_seconds: u64,
    pub last_seen: Instant,
    pub components: BTreeMap<String, ComponentState>,
    pub providers: BTreeMap<String, ProviderState>,
    pub health: HostHealth,
    /// CPU and memory, as the last heartbeat said (trellis nodes report them).
    pub resources: Option<HostResources>,
    /// Requests per component over the host's recent window, as the last heartbeat said. Kept
    /// apart from `components`, whose changes make scalers look again: traffic changes with
    /// every heartbeat.
    pub traffic: BTreeMap<String, ComponentTraffic>,
    /// Requests the host's HTTP server holds for components that run nowhere yet (an app
    /// scaled to zero), by component id: counted in `traffic` as in flight.
    pub waiting: BTreeMap<String, u32>,
}

impl HostState {
    /// Instances of anything running here: each component's count, one per provider.
    pub fn instances(&self) -> u64 {
        self.components
            .values()
            .map(|c| u64::from(c.count))
            .sum::<u64>()
            + self.providers.len() as u64
    }

    pub(crate) fn new(now: Instant) -> Self {
        Self {
            friendly_name: String::new(),
            labels: BTreeMap::new(),
            uptime_seconds: 0,
            last_seen: now,
            components: BTreeMap::new(),
            providers: BTreeMap::new(),
            health: HostHealth::joined(now),
            resources: None,
            traffic: BTreeMap::new(),
            waiting: BTreeMap::new(),
        }
    }
}

/// What an event changed, so that only the apps it concerns are reconciled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touched {
    Nothing,
    /// Hosts came, went or changed labels: any app's placement may change.
    Everything,
    /// These component or provider ids changed.
    Ids(Vec<String>),
}

impl Touched {
    pub fn any(&self) -> bool {
        *self != Touched::Nothing
    }

    fn ids(ids: Vec<String>) -> Self {
        if ids.is_empty() {
            Touched::Nothing
        } else {
            Touched::Ids(ids)
        }
    }
}

/// The ids whose entries differ between two maps.
fn changed_ids<V: PartialEq>(old: &BTreeMap<String, V>, new: &BTreeMap<String, V>) -> Vec<String> {
    let mut ids: Vec<String> = old
        .iter()
        .filter(|(id, v)| new.get(*id) != Some(v))
        .map(|(id, _)| id.clone())
        .collect();
    ids.extend(new.keys().filter(|id| !old.contains_key(*id)).cloned());
    ids
}

#[derive(Debug, Default)]
pub struct LatticeState {
    /// Changed through the methods below, which tell the host directory when to rebuild.
    pub hosts: BTreeMap<String, HostState>,
    /// The hosts as snapshots index them (by label), shared by every snapshot until hosts
    /// come, go, or change labels or names: heartbeats change none of that, so at 10,000
    /// hosts a pass does not rebuild 10,000 host descriptions (docs/scale.md).
    directory: Option<Arc<HostDirectory>>,
    /// By [`Link::key`].
    pub links: LinkTable,
    pub configs: BTreeMap<String, BTreeMap<String, String>>,
    pub thresholds: HealthThresholds,
    /// Hosts forgotten as unreachable, and when: one heard of again within
    /// [`REMEMBER_DEPARTED`] comes back suspect, not healthy.
    departed: BTreeMap<String, Instant>,
    /// Changes of health not yet taken by the loop (which logs and publishes them).
    health_changes: Vec<HealthChange>,
}

/// How long a host forgotten as unreachable is remembered: one that comes back within this
/// time has been flapping, and has to prove steady before new work goes to it.
pub const REMEMBER_DEPARTED: Duration = Duration::from_secs(300);

impl LatticeState {
    /// An empty state that judges hosts' health by `thresholds`.
    pub fn new(thresholds: HealthThresholds) -> Self {
        Self {
            thresholds,
            ..Self::default()
        }
    }

    /// The host, created if new (second value true), seen at `at` (or later, if a newer
    /// message said so already: replayed events are older than live ones).
    fn host_mut(&mut self, id: &str, at: Instant) -> (&mut HostState, bool) {
        let mut new = false;
        let host = self.hosts.entry(id.to_string()).or_insert_with(|| {
            new = true;
            HostState::new(at)
        });
        if new {
            self.directory = None;
            if let Some(left) = self.departed.remove(id) {
                if at.saturating_duration_since(left) < REMEMBER_DEPARTED {
                    host.health = HostHealth::returned(at);
                    self.health_changes.push(HealthChange {
                        host_id: id.to_string(),
                        friendly_name: host.friendly_name.clone(),
                        from: Health::Unreachable,
                        to: Health::Suspect,
                        reason: format!(
                            "heard from again {:.0}s after it was unreachable",
                            at.saturating_duration_since(left).as_secs_f64()
                        ),
                    });
                }
            }
        }
        host.last_seen = host.last_seen.max(at);
        (host, new)
    }

    /// Applies an event from `source` (the host that sent it), that happened at `at`. Returns
    /// what changed that a scaler could care about.
    pub fn apply(&mut self, source: &str, event: &Event, at: Instant) -> Touched {
        match event {
            Event::HostStarted(e) => {
                let (host, _) = self.host_mut(source, at);
                host.labels = e.labels.clone();
                host.friendly_name = e.friendly_name.clone();
                self.directory = None;
                Touched::Everything
            }
            Event::HostStopped(_) => match self.hosts.remove(source) {
                Some(_) => {
                    self.directory = None;
                    Touched::Everything
                }
                None => Touched::Nothing,
            },
            Event::HostHeartbeat(hb) => {
                let thresholds = self.thresholds;
                let (host, new) = self.host_mut(source, at);
                let components = components_of(&hb.components);
                let providers = providers_of(&hb.providers);
                let labels_changed = host.labels != hb.labels;
                let described_anew = labels_changed || host.friendly_name != hb.friendly_name;
                let mut ids = changed_ids(&host.components, &components);
                ids.extend(changed_ids(&host.providers, &providers));
                host.components = components;
                host.providers = providers;
                host.labels = hb.labels.clone();
                host.friendly_name = hb.friendly_name.clone();
                host.uptime_seconds = hb.uptime_seconds;
                host.resources = hb.resources.clone();
                host.traffic = hb
                    .components
                    .iter()
                    .filter_map(|c| Some((c.id.clone(), c.traffic.clone()?)))
                    .collect();
                for (cid, held) in &hb.waiting {
                    host.traffic.entry(cid.clone()).or_default().in_flight += held;
                }
                // Demand for a component that runs nowhere concerns its app at once: its
                // autoscaler starts an instance while the request waits.
                ids.extend(changed_ids(&host.waiting, &hb.waiting));
                host.waiting = hb.waiting.clone();
                let recovered = host.health.heartbeat(at, &thresholds);
                let friendly_name = host.friendly_name.clone();
                if let Some((to, reason)) = recovered {
                    self.health_changes.push(HealthChange {
                        host_id: source.to_string(),
                        friendly_name,
                        from: Health::Suspect,
                        to,
                        reason,
                    });
                }
                if described_anew {
                    self.directory = None;
                }
                if new || labels_changed {
                    Touched::Everything
                } else {
                    Touched::ids(ids)
                }
            }
            Event::ComponentScaled(e) => {
                let host_id = event_host(&e.host_id, source);
                let (host, new) = self.host_mut(host_id, at);
                let changed = if e.max_instances == 0 {
                    host.components.remove(&e.component_id).is_some()
                } else {
                    let state = ComponentState {
                        image: e.image_ref.clone(),
                        count: e.max_instances,
                        annotations: e.annotations.clone(),
                    };
                    host.components
                        .insert(e.component_id.clone(), state.clone())
                        != Some(state)
                };
                match (new, changed) {
                    (true, _) => Touched::Everything,
                    (false, true) => Touched::Ids(vec![e.component_id.clone()]),
                    (false, false) => Touched::Nothing,
                }
            }
            Event::ProviderStarted(e) => {
                let host_id = event_host(&e.host_id, source);
                let (host, new) = self.host_mut(host_id, at);
                let state = ProviderState {
                    image: e.image_ref.clone(),
                    annotations: e.annotations.clone(),
                };
                let changed =
                    host.providers.insert(e.provider_id.clone(), state.clone()) != Some(state);
                match (new, changed) {
                    (true, _) => Touched::Everything,
                    (false, true) => Touched::Ids(vec![e.provider_id.clone()]),
                    (false, false) => Touched::Nothing,
                }
            }
            Event::ProviderStopped(e) => {
                let host_id = event_host(&e.host_id, source);
                let (host, new) = self.host_mut(host_id, at);
                // Any event is a sign of life, so an unknown host joins here as with the other
                // events, and a host joining concerns every app (as with the other events).
                match (new, host.providers.remove(&e.provider_id).is_some()) {
                    (true, _) => Touched::Everything,
                    (false, true) => Touched::Ids(vec![e.provider_id.clone()]),
                    (false, false) => Touched::Nothing,
                }
            }
            // Failures change nothing that runs; the executor reads them, and the scalers of
            // the component look again.
            Event::ComponentScaleFailed(e) => Touched::Ids(vec![e.component_id.clone()]),
            Event::ProviderStartFailed(e) => Touched::Ids(vec![e.provider_id.clone()]),
            // Links and configs come from their KV buckets, which hold the values.
            _ => Touched::Nothing,
        }
    }

    /// Takes a host's inventory (answer to `host.get`) as the truth about it.
    pub fn apply_inventory(&mut self, inv: &HostInventory, now: Instant) {
        let (host, _) = self.host_mut(&inv.host_id, now);
        let described_anew = host.friendly_name != inv.friendly_name || host.labels != inv.labels;
        host.friendly_name = inv.friendly_name.clone();
        host.labels = inv.labels.clone();
        host.uptime_seconds = inv.uptime_seconds;
        host.components = components_of(&inv.components);
        host.providers = providers_of(&inv.providers);
        if described_anew {
            self.directory = None;
        }
    }

    /// Time the controller spent not reading events (a long reconcile pass) does not count as
    /// a host's silence: every host's last sign of life moves forward by `stalled`, up to
    /// `now`. Without this, heartbeats queued behind a pass of many apps on a large lattice
    /// made live hosts look dead.
    pub fn excuse(&mut self, stalled: Duration, now: Instant) {
        for host in self.hosts.values_mut() {
            host.last_seen = (host.last_seen + stalled).min(now);
        }
    }

    /// Judges every host's health at `now`: hosts silent for a few heartbeats become suspect,
    /// and those silent for `timeout` are forgotten (unreachable). Returns the forgotten ids.
    pub fn judge_hosts(&mut self, timeout: Duration, now: Instant) -> Vec<String> {
        let mut dead = Vec::new();
        for (id, host) in &mut self.hosts {
            if now.duration_since(host.last_seen) > timeout {
                dead.push(id.clone());
                continue;
            }
            if let Some((to, reason)) = host.health.judge(host.last_seen, now, &self.thresholds) {
                self.health_changes.push(HealthChange {
                    host_id: id.clone(),
                    friendly_name: host.friendly_name.clone(),
                    from: Health::Healthy,
                    to,
                    reason,
                });
            }
        }
        for id in &dead {
            let Some(host) = self.hosts.remove(id) else {
                continue;
            };
            self.health_changes.push(HealthChange {
                host_id: id.clone(),
                friendly_name: host.friendly_name,
                from: host.health.health,
                to: Health::Unreachable,
                reason: format!("no heartbeat for {:.1}s", timeout.as_secs_f64()),
            });
            self.departed.insert(id.clone(), now);
        }
        self.departed
            .retain(|_, left| now.saturating_duration_since(*left) < REMEMBER_DEPARTED);
        if !dead.is_empty() {
            self.directory = None;
        }
        dead
    }

    /// Hosts lately forgotten as unreachable, and when.
    pub fn departed(&self) -> impl Iterator<Item = (&str, Instant)> {
        self.departed.iter().map(|(id, at)| (id.as_str(), *at))
    }

    /// The changes of health since the last call, oldest first.
    pub fn take_health_changes(&mut self) -> Vec<HealthChange> {
        std::mem::take(&mut self.health_changes)
    }

    /// The lattice as plugins see it at logical time `now_ms`. The hosts' part is reused from
    /// the last snapshot unless hosts changed since; the instances are copied (a pass overlays
    /// its commands on them), which costs what runs, not the number of hosts.
    pub fn snapshot(&mut self, now_ms: u64) -> LatticeSnapshot {
        let hosts = &self.hosts;
        let directory = self.directory.get_or_insert_with(|| {
            let described = hosts.iter().map(|(id, host)| HostInfo {
                id: id.clone(),
                friendly_name: host.friendly_name.clone(),
                labels: pairs(&host.labels),
                uptime_seconds: host.uptime_seconds,
            });
            Arc::new(HostDirectory::new(described).read_at(now_ms))
        });
        let mut snapshot = LatticeSnapshot::new(Arc::clone(directory), now_ms);
        for (id, host) in &self.hosts {
            // A healthy host that reports nothing reads as the default: left out, so that a
            // lattice of such hosts costs nothing here.
            if host.resources.is_some() || host.health.health != Health::Healthy {
                snapshot.vitals.set_host(id, vitals_of(host));
            }
            for (cid, traffic) in &host.traffic {
                snapshot.vitals.add_traffic(cid, traffic_of(id, traffic));
            }
            for (cid, c) in &host.components {
                snapshot.put_component(ComponentInstance {
                    host_id: id.clone(),
                    component_id: cid.clone(),
                    image: c.image.clone(),
                    count: c.count,
                    annotations: pairs(&c.annotations),
                });
            }
            for (pid, p) in &host.providers {
                snapshot.put_provider(ProviderInstance {
                    host_id: id.clone(),
                    provider_id: pid.clone(),
                    image: p.image.clone(),
                    annotations: pairs(&p.annotations),
                });
            }
        }
        for link in self.links.values() {
            snapshot
                .links
                .entry(link.source_id.clone())
                .or_default()
                .push(to_wit_link(link));
        }
        for (name, entries) in &self.configs {
            snapshot.configs.insert(name.clone(), pairs(entries));
        }
        snapshot
    }
}

fn vitals_of(host: &HostState) -> HostVitals {
    let r = host.resources.clone().unwrap_or_default();
    HostVitals {
        health: host.health.health,
        reported: host.resources.is_some(),
        cpus: r.cpus,
        cpu_use: r.cpu_use,
        process_cpu_use: r.process_cpu_use,
        memory_total_bytes: r.memory_total_bytes,
        memory_available_bytes: r.memory_available_bytes,
    }
}

fn traffic_of(host_id: &str, t: &ComponentTraffic) -> Traffic {
    Traffic {
        host_id: host_id.to_string(),
        in_flight: t.in_flight,
        requests_per_second: t.requests_per_second,
        p50_ms: t.p50_ms,
        p99_ms: t.p99_ms,
        error_rate: t.error_rate,
        window_seconds: t.window_seconds,
    }
}

/// The host an event is about: the one it names, or else the one that sent it.
fn event_host<'a>(named: &'a str, source: &'a str) -> &'a str {
    if named.is_empty() {
        source
    } else {
        named
    }
}

/// What a heartbeat or an inventory says runs on a host: components by id.
fn components_of(list: &[ComponentDescription]) -> BTreeMap<String, ComponentState> {
    list.iter()
        .filter(|c| c.max_instances > 0)
        .map(|c| {
            let state = ComponentState {
                image: c.image_ref.clone(),
                count: c.max_instances,
                annotations: c.annotations.clone().unwrap_or_default(),
            };
            (c.id.clone(), state)
        })
        .collect()
}

/// Providers by id, from a heartbeat or an inventory.
fn providers_of(list: &[ProviderDescription]) -> BTreeMap<String, ProviderState> {
    list.iter()
        .map(|p| {
            let state = ProviderState {
                image: p.image_ref.clone().unwrap_or_default(),
                annotations: p.annotations.clone().unwrap_or_default(),
            };
            (p.id.clone(), state)
        })
        .collect()
}

pub fn pairs(map: &BTreeMap<String, String>) -> Vec<Pair> {
    map.iter()
        .map(|(k, v)| Pair {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

pub fn to_wit_link(link: &Link) -> trellis_runtime::bindings::Link {
    trellis_runtime::bindings::Link {
        source_id: link.source_id.clone(),
        target: link.target.clone(),
        name: link.name.clone(),
        wit_namespace: link.wit_namespace.clone(),
        wit_package: link.wit_package.clone(),
        interfaces: link.interfaces.clone(),
        source_config: link.source_config.clone(),
        target_config: link.target_config.clone(),
    }
}

pub fn from_wit_link(link: &trellis_runtime::bindings::Link) -> Link {
    Link {
        source_id: link.source_id.clone(),
        target: link.target.clone(),
        name: link.name.clone(),
        wit_namespace: link.wit_namespace.clone(),
        wit_package: link.wit_package.clone(),
        interfaces: link.interfaces.clone(),
        source_config: link.source_config.clone(),
        target_config: link.target_config.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_lattice::event::{ComponentScaled, HostHeartbeat};

    #[test]
    fn heartbeat_and_scale_events_build_the_snapshot() {
        let now = Instant::now();
        let mut state = LatticeState::default();
        let hb = HostHeartbeat {
            labels: [("region".to_string(), "east".to_string())].into(),
            components: vec![ComponentDescription {
                id: "app-a".into(),
                image_ref: "file:///a.wasm".into(),
                max_instances: 2,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            state.apply("H1", &Event::HostHeartbeat(hb.clone()), now),
            Touched::Everything,
            "a new host may change any app's placement"
        );
        assert!(!state.apply("H1", &Event::HostHeartbeat(hb), now).any());
        let scaled = ComponentScaled {
            host_id: "H1".into(),
            component_id: "app-a".into(),
            max_instances: 0,
            ..Default::default()
        };
        assert_eq!(
            state.apply("H1", &Event::ComponentScaled(scaled), now),
            Touched::Ids(vec!["app-a".into()])
        );
        let snap = state.snapshot(7);
        assert_eq!(snap.host("H1").unwrap().labels[0].value, "east");
        assert!(snap.component_instances("app-a").is_empty());
        assert_eq!(snap.now_ms, 7);
    }

    #[test]
    fn a_host_first_heard_of_in_a_provider_stopped_event_touches_everything() {
        // Found by tests/properties.rs: the host joined the snapshot, but the answer said
        // nothing changed, so no app was reconciled to place on it.
        let mut state = LatticeState::default();
        let stopped = trellis_lattice::event::ProviderStopped {
            provider_id: "p".into(),
            ..Default::default()
        };
        let touched = state.apply("H1", &Event::ProviderStopped(stopped), Instant::now());
        assert!(state.hosts.contains_key("H1"));
        assert_eq!(touched, Touched::Everything);
    }

    #[test]
    fn silent_hosts_expire() {
        let start = Instant::now();
        let mut state = LatticeState::default();
        state.apply("H1", &Event::HostHeartbeat(HostHeartbeat::default()), start);
        let later = start + Duration::from_secs(10);
        assert!(state.judge_hosts(Duration::from_secs(30), later).is_empty());
        assert_eq!(state.judge_hosts(Duration::from_secs(5), later), ["H1"]);
        assert!(state.hosts.is_empty());
    }

    #[test]
    fn time_spent_not_listening_is_not_silence() {
        let start = Instant::now();
        let mut state = LatticeState::default();
        state.apply("H1", &Event::HostHeartbeat(HostHeartbeat::default()), start);
        // Silent 10 s, of which the controller spent 6 s in a pass reading nothing.
        let later = start + Duration::from_secs(10);
        state.excuse(Duration::from_secs(6), later);
        assert!(state.judge_hosts(Duration::from_secs(5), later).is_empty());
        // Never into the future: excusing more than the silence counts from now.
        state.excuse(Duration::from_secs(60), later);
        assert_eq!(
            state.judge_hosts(Duration::from_secs(5), later + Duration::from_secs(6)),
            ["H1"]
        );
    }

    /// Heartbeats keep the snapshots' host directory; a change of labels, a new host or a
    /// lost one rebuild it.
    #[test]
    fn the_host_directory_is_rebuilt_only_when_hosts_change() {
        let now = Instant::now();
        let mut state = LatticeState::default();
        let beat = |zone: &str, uptime| {
            Event::HostHeartbeat(HostHeartbeat {
                labels: [("zone".to_string(), zone.to_string())].into(),
                uptime_seconds: uptime,
                ..Default::default()
            })
        };
        state.apply("H1", &beat("a", 1), now);
        let first = state.snapshot(0);
        state.apply("H1", &beat("a", 2), now);
        let second = state.snapshot(1_000);
        assert!(std::ptr::eq(first.directory(), second.directory()));
        assert_eq!(second.host("H1").unwrap().uptime_seconds, 2);
        state.apply("H1", &beat("b", 3), now);
        let third = state.snapshot(2_000);
        assert!(!std::ptr::eq(second.directory(), third.directory()));
        assert_eq!(
            third
                .hosts_matching(&pairs(&[("zone".into(), "b".into())].into()))
                .len(),
            1
        );
        state.apply("H2", &beat("b", 1), now);
        assert_eq!(state.snapshot(2_000).host_count(), 2);
        state.judge_hosts(Duration::ZERO, now + Duration::from_secs(1));
        assert_eq!(state.snapshot(3_000).host_count(), 0);
    }
}
