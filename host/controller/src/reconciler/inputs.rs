//! What the reconcile loop listens to, opened before it starts: the lattice's event stream
//! (with whether the loop is caught up with it), the watches of the KV buckets (manifests,
//! links, configs, statuses, ownership), every control-interface request on the lattice, and
//! `plan` queries.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, kv};
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use trellis_bus::resume::{self, Resumed};
use trellis_lattice::api::{HostsRequest, HostsResponse, PlanResponse};
use trellis_lattice::Manifest;
use trellis_lattice::{ctl, event};

use super::settings::LoopSettings;
use crate::ownership::{controllers_bucket, owners_bucket, OwnershipWatches};

/// The JetStream stream holding a lattice's events.
pub fn events_stream(lattice: &str) -> String {
    format!("TRELLIS_EVENTS_{lattice}")
}

/// Events older than this leave the stream: it exists to bridge a controller restart, not to
/// archive the lattice.
const EVENTS_MAX_AGE: Duration = Duration::from_secs(600);
/// A cap on the stream's size, so 10,000 hosts' heartbeats cannot fill the disk.
const EVENTS_MAX_BYTES: i64 = 512 * 1024 * 1024;

/// How fresh the last event read must be for the controller to count as caught up although
/// the stream held more: those are newer still, so no host's silence is misjudged by more
/// than this.
const CAUGHT_UP_LAG: Duration = Duration::from_millis(500);

/// Whether the controller reads events as they come: nothing was left in the stream when it
/// read the last one, or that one was only just published. Requiring nothing left alone is not
/// enough: two hosts heartbeating moments apart, in step with the controller's tick, leave the
/// second heartbeat pending at every tick, and a dead host was then never declared dead.
pub(super) fn caught_up(pending: u64, lag: Duration) -> bool {
    pending == 0 || lag <= CAUGHT_UP_LAG
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
    pub(super) events: BoxStream<'static, Resumed<EventMessage>>,
    pub(super) manifests: BoxStream<'static, kv::Entry>,
    /// The manifest store held nothing when its watch opened, so the watch has nothing to
    /// deliver before it is caught up (see `DeployedApps::store_read`).
    pub(super) manifests_empty: bool,
    pub(super) links: BoxStream<'static, kv::Entry>,
    pub(super) configs: BoxStream<'static, kv::Entry>,
    pub(super) statuses: BoxStream<'static, kv::Entry>,
    pub(super) owners: BoxStream<'static, kv::Entry>,
    pub(super) controllers: BoxStream<'static, kv::Entry>,
    /// Questions only the loop can answer, from the API extensions.
    pub(super) queries: mpsc::Receiver<Query>,
    /// Every control-interface request on the lattice, to see what other controllers sent.
    pub(super) commands: async_nats::Subscriber,
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
        queries: mpsc::Receiver<Query>,
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
        let manifest_watch = manifests.watch_with_history(">").await?;
        // Asked after the watch opened: whatever is put since arrives through the watch. A
        // delete leaves a marker, so a store once written never counts as empty again.
        let manifests_empty = manifests
            .status()
            .await
            .with_context(|| format!("cannot read the status of KV bucket {}", manifests.name))?
            .values()
            == 0;
        let controllers = bucket(controllers_bucket(lattice)).await?;
        Ok(Self {
            commands: client
                .subscribe(format!("{}.>", ctl::Subjects::new(lattice).prefix()))
                .await?,
            events: event_stream(js, lattice, settings.event_replay).await?,
            manifests: watch(manifests, manifest_watch),
            manifests_empty,
            links: watch(links, links.watch_with_history(">").await?),
            configs: watch(configs, configs.watch_with_history(">").await?),
            statuses: watch(statuses, statuses.watch_with_history(">").await?),
            owners: watch(&owners, ownership.owners),
            controllers: watch(&controllers, ownership.controllers),
            queries,
        })
    }
}

/// A question for the loop, which holds the lattice state.
pub enum Query {
    /// `plan`: what deploying `manifest` would issue now.
    Plan {
        manifest: Manifest,
        reply: oneshot::Sender<PlanResponse>,
    },
    /// `hosts.get`: the hosts' health, resources and (when asked) history.
    Hosts {
        request: HostsRequest,
        reply: oneshot::Sender<HostsResponse>,
    },
    /// `snapshot.get`: the lattice as a plugin would see it now.
    Snapshot {
        reply: oneshot::Sender<trellis_runtime::LatticeDocument>,
    },
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
