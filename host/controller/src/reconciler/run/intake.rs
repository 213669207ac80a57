//! What the loop hears, apart from its timers: lattice events (replayed, then live), the
//! manifest store's entries, the link and config buckets' entries, and whether NATS is there.
//! Each updates what the loop knows and marks the apps it concerns dirty.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use futures::stream::BoxStream;
use futures::StreamExt;
use trellis_bus::link_specs::{self, LinkTable};
use trellis_bus::resume::Resumed;
use trellis_lattice::event::CloudEvent;

use super::Reconciler;
use crate::cost::{self, Work};
use crate::reconciler::inputs::EventMessage;
use crate::state::Touched;

impl Reconciler {
    /// Applies the events replayed from the stream, up to the present, before the inventory
    /// queries (which are newer, so they win).
    pub(super) async fn catch_up(
        &mut self,
        events: &mut BoxStream<'static, Resumed<EventMessage>>,
    ) {
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

    pub(super) fn on_event_input(&mut self, input: Resumed<EventMessage>) {
        match input {
            Resumed::Item(msg) => self.on_event(&msg),
            Resumed::Reopened => self.after_outage("the event stream was reopened"),
        }
    }

    pub(super) fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Notices a NATS reconnect (e.g. a nats-server restart) that the event stream has not
    /// reported yet, and asks the hosts for their inventory once after an outage.
    pub(super) async fn check_connection(&mut self) {
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
    pub(super) fn after_outage(&mut self, why: &str) {
        let now = Instant::now();
        tracing::info!(lattice = %self.lattice, hosts = self.state.hosts.len(), "{why}: hosts get a fresh heartbeat timeout and are asked for their inventory");
        for host in self.state.hosts.values_mut() {
            host.last_seen = host.last_seen.max(now);
        }
        self.rediscover = true;
        self.dirty.all(now);
    }

    /// Applies one lattice event and marks the apps it concerns.
    pub(super) fn on_event(&mut self, msg: &EventMessage) {
        cost::measure(Work::Events, || self.apply_event(msg));
    }

    fn apply_event(&mut self, msg: &EventMessage) {
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

    pub(super) fn mark_ids<'a>(&mut self, ids: impl Iterator<Item = &'a str>, now: Instant) {
        for id in ids {
            for app in self.apps.apps_of(id) {
                self.dirty.app(app, now);
            }
        }
    }

    pub(super) fn on_manifest(&mut self, entry: kv::Entry) {
        let app = entry.key.clone();
        // A new put or deploy of the app is the operator's answer to a churn hold.
        self.executor.forget_app(&app);
        if !self.apps.on_manifest(entry) {
            self.status.note_undeployed(app);
        }
    }

    /// An entry of the link bucket: all links of one source. The apps to look at again are
    /// those of the source and of its links' targets, before and after.
    pub(super) fn on_link(&mut self, entry: kv::Entry) {
        let now = Instant::now();
        let Some(source_id) = entry.key.strip_prefix(link_specs::SPEC_PREFIX) else {
            return;
        };
        let targets = |links: &LinkTable| -> Vec<String> {
            links
                .from_source(source_id)
                .map(|l| l.target.clone())
                .collect()
        };
        let mut touched = targets(&self.state.links);
        if !self.state.links.apply(&entry) {
            return;
        }
        touched.extend(targets(&self.state.links));
        touched.push(source_id.to_string());
        self.mark_ids(touched.iter().map(String::as_str), now);
    }

    pub(super) fn on_config(&mut self, entry: kv::Entry) {
        let now = Instant::now();
        let waiting: Vec<String> = self
            .executor
            .waiting_for_config(&entry.key)
            .map(str::to_string)
            .collect();
        for app in waiting {
            self.dirty.app(&app, now);
        }
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
}
