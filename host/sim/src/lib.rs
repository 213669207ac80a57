//! A simulated lattice: N virtual hosts in one process.
//!
//! Each virtual host obeys the wasmCloud control interface v1 the way a trellis node does
//! (component scale, provider start/stop, links and configs, labels, ping, inventory, stop) and
//! publishes the same CloudEvents (host_started, heartbeats, component_scaled,
//! provider_started, …), but runs no wasm: a component "runs" as soon as its scale command is
//! accepted. That makes lattices of 10,000 hosts cheap enough to test a controller against on
//! one machine. All hosts share one NATS connection and one subscription per subject pattern;
//! messages are dispatched to hosts by the id in the subject.
//!
//! Wire types and host ids come from `trellis-lattice`; links and configs live in the same KV
//! buckets real nodes use, so a simulated lattice and real nodes can share a lattice.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, kv};
use async_nats::Message;
use futures::StreamExt as _;
use serde::Serialize;
use trellis_lattice::ctl::{
    self, ComponentDescription, CtlResponse, DeleteLinkRequest, HostInventory, HostLabel,
    HostLabelIdentifier, Link, ProviderDescription, ScaleComponentCommand, StartProviderCommand,
    StopProviderCommand,
};
use trellis_lattice::event::{self, CloudEvent};

/// The version simulated hosts report.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "-sim");

/// How a simulated lattice is set up.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nats_url: String,
    pub lattice: String,
    /// How many virtual hosts.
    pub hosts: usize,
    /// Every host sends a heartbeat this often; the hosts' heartbeats are spread evenly over
    /// the interval rather than sent in one burst.
    pub heartbeat_interval: Duration,
    /// Labels every host carries (on top of `hostcore.*`).
    pub labels: BTreeMap<String, String>,
    /// When above zero, host `i` also carries `zone=zone-{i % zones}`, so spread requirements
    /// have something to spread over.
    pub zones: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".into(),
            lattice: "default".into(),
            hosts: 10,
            heartbeat_interval: Duration::from_secs(5),
            labels: BTreeMap::new(),
            zones: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Instance {
    image: String,
    count: u32,
    annotations: BTreeMap<String, String>,
}

struct Host {
    friendly_name: String,
    labels: BTreeMap<String, String>,
    started: Instant,
    components: BTreeMap<String, Instance>,
    providers: BTreeMap<String, Instance>,
}

impl Host {
    fn heartbeat(&self) -> event::HostHeartbeat {
        let uptime = self.started.elapsed();
        event::HostHeartbeat {
            components: self.component_descriptions(),
            providers: self.provider_descriptions(),
            labels: self.labels.clone(),
            friendly_name: self.friendly_name.clone(),
            uptime_seconds: uptime.as_secs(),
            uptime_human: ctl::uptime_human(uptime),
            version: VERSION.into(),
            issuer: String::new(),
        }
    }

    fn component_descriptions(&self) -> Vec<ComponentDescription> {
        self.components
            .iter()
            .map(|(id, c)| ComponentDescription {
                id: id.clone(),
                image_ref: c.image.clone(),
                name: Some(id.clone()),
                annotations: Some(c.annotations.clone()),
                revision: 0,
                max_instances: c.count,
            })
            .collect()
    }

    fn provider_descriptions(&self) -> Vec<ProviderDescription> {
        self.providers
            .iter()
            .map(|(id, p)| ProviderDescription {
                id: id.clone(),
                image_ref: Some(p.image.clone()),
                name: Some(id.clone()),
                revision: 0,
                annotations: Some(p.annotations.clone()),
            })
            .collect()
    }
}

/// Counts of what the simulated hosts were asked to do.
#[derive(Debug, Default)]
pub struct Counters {
    /// Control requests that changed or queried something (everything but ping and inventory).
    pub commands: AtomicU64,
    pub component_scales: AtomicU64,
    pub provider_starts: AtomicU64,
    pub provider_stops: AtomicU64,
}

struct Lattice {
    client: async_nats::Client,
    lattice: String,
    subjects: ctl::Subjects,
    hosts: Mutex<HashMap<String, Host>>,
    links: kv::Store,
    configs: kv::Store,
    counters: Counters,
}

/// A running simulated lattice. Dropping it stops the hosts without a word (as a crash would).
pub struct SimLattice {
    lattice: Arc<Lattice>,
    ids: Vec<String>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SimLattice {
    /// Connects, subscribes to the control interface, announces every host (`host_started` and
    /// a first heartbeat) and keeps their heartbeats going.
    pub async fn start(config: SimConfig) -> anyhow::Result<Self> {
        Self::start_with_options(config, async_nats::ConnectOptions::new()).await
    }

    /// Like [`SimLattice::start`], connecting with `options` (credentials, TLS).
    pub async fn start_with_options(
        config: SimConfig,
        options: async_nats::ConnectOptions,
    ) -> anyhow::Result<Self> {
        let client = trellis_bus::connect(
            &config.nats_url,
            options.name(format!("trellis-sim {}", config.lattice)),
        )
        .await?;
        let js = jetstream::new(client.clone());
        let links = trellis_bus::open_bucket(&js, &ctl::link_bucket(&config.lattice), 1).await?;
        let configs =
            trellis_bus::open_bucket(&js, &ctl::config_bucket(&config.lattice), 1).await?;
        let mut hosts = HashMap::new();
        let mut ids = Vec::with_capacity(config.hosts);
        for i in 0..config.hosts {
            let id = trellis_lattice::host_id::generate();
            let mut labels = BTreeMap::from([
                ("hostcore.os".to_string(), std::env::consts::OS.to_string()),
                (
                    "hostcore.arch".to_string(),
                    std::env::consts::ARCH.to_string(),
                ),
                (
                    "hostcore.osfamily".to_string(),
                    std::env::consts::FAMILY.to_string(),
                ),
            ]);
            if config.zones > 0 {
                labels.insert("zone".into(), format!("zone-{}", i % config.zones));
            }
            labels.extend(config.labels.clone());
            hosts.insert(
                id.clone(),
                Host {
                    friendly_name: format!("sim-{i}"),
                    labels,
                    started: Instant::now(),
                    components: BTreeMap::new(),
                    providers: BTreeMap::new(),
                },
            );
            ids.push(id);
        }
        let lattice = Arc::new(Lattice {
            subjects: ctl::Subjects::new(&config.lattice),
            lattice: config.lattice.clone(),
            client,
            hosts: Mutex::new(hosts),
            links,
            configs,
            counters: Counters::default(),
        });
        let requests = lattice.subscribe().await?;
        let mut tasks = vec![tokio::spawn(Arc::clone(&lattice).serve(requests))];
        trellis_bus::sync(&lattice.client).await?;
        for id in &ids {
            lattice.announce(id).await;
        }
        lattice
            .client
            .flush()
            .await
            .context("announcing the simulated hosts")?;
        tasks.push(tokio::spawn(heartbeats(
            Arc::clone(&lattice),
            ids.clone(),
            config.heartbeat_interval,
        )));
        tracing::info!(lattice = %config.lattice, hosts = ids.len(), "simulated lattice started");
        Ok(Self {
            lattice,
            ids,
            tasks,
        })
    }

    /// The ids of the hosts, in creation order (including killed ones).
    pub fn host_ids(&self) -> &[String] {
        &self.ids
    }

    /// How many hosts are running.
    pub fn running(&self) -> usize {
        lock(&self.lattice.hosts).len()
    }

    /// What the hosts were asked to do so far.
    pub fn counters(&self) -> &Counters {
        &self.lattice.counters
    }

    /// The ids of the running hosts where `component_id` runs, with their instance counts.
    pub fn instances(&self, component_id: &str) -> BTreeMap<String, u32> {
        lock(&self.lattice.hosts)
            .iter()
            .filter_map(|(id, h)| {
                h.components
                    .get(component_id)
                    .map(|c| (id.clone(), c.count))
            })
            .collect()
    }

    /// Per component id: the total instance count over the running hosts, and on how many
    /// hosts it runs (one pass over every host, for checks on large lattices).
    pub fn instance_totals(&self) -> HashMap<String, (u32, usize)> {
        let mut totals: HashMap<String, (u32, usize)> = HashMap::new();
        for host in lock(&self.lattice.hosts).values() {
            for (id, c) in &host.components {
                let entry = totals.entry(id.clone()).or_default();
                entry.0 += c.count;
                entry.1 += 1;
            }
        }
        totals
    }

    /// The running host with the most component instances, and how many it runs.
    pub fn busiest_host(&self) -> Option<(String, u32)> {
        lock(&self.lattice.hosts)
            .iter()
            .map(|(id, h)| (id.clone(), h.components.values().map(|c| c.count).sum()))
            .max_by_key(|(_, n)| *n)
    }

    /// Kills a host as a crash would: no `host_stopped`, no more heartbeats or replies.
    /// Returns false if no such host was running.
    pub fn kill(&self, host_id: &str) -> bool {
        lock(&self.lattice.hosts).remove(host_id).is_some()
    }

    /// Stops every host gracefully: each says `host_stopped`.
    pub async fn stop(self) -> anyhow::Result<()> {
        for task in &self.tasks {
            task.abort();
        }
        let ids: Vec<String> = lock(&self.lattice.hosts).keys().cloned().collect();
        for id in ids {
            let labels = lock(&self.lattice.hosts)
                .remove(&id)
                .map(|h| h.labels)
                .unwrap_or_default();
            self.lattice
                .publish(&id, event::HOST_STOPPED, event::HostStopped { labels })
                .await;
        }
        self.lattice
            .client
            .flush()
            .await
            .context("flushing host_stopped events")?;
        Ok(())
    }
}

impl Drop for SimLattice {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Lattice {
    async fn subscribe(
        &self,
    ) -> anyhow::Result<futures::stream::SelectAll<async_nats::Subscriber>> {
        let prefix = self.subjects.prefix();
        let group = ctl::host_queue_group(&self.lattice);
        let client = &self.client;
        let subscriptions = vec![
            client.subscribe(self.subjects.host_ping()).await,
            // Every host-addressed verb, for all virtual hosts at once.
            client.subscribe(format!("{prefix}.*.*.*")).await,
            client
                .queue_subscribe(format!("{prefix}.link.*"), group.clone())
                .await,
            client
                .queue_subscribe(format!("{prefix}.config.>"), group)
                .await,
        ];
        let subscriptions = subscriptions
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .context("cannot subscribe to the control interface")?;
        Ok(futures::stream::select_all(subscriptions))
    }

    async fn publish(&self, host_id: &str, kind: &str, data: impl Serialize) {
        let event = CloudEvent::new(kind, host_id, data);
        let Ok(payload) = serde_json::to_vec(&event) else {
            return;
        };
        if let Err(e) = self
            .client
            .publish(event::subject(&self.lattice, kind), payload.into())
            .await
        {
            tracing::warn!(host_id, kind, "cannot publish event: {e}");
        }
    }

    async fn announce(&self, id: &str) {
        let (started, heartbeat) = {
            let hosts = lock(&self.hosts);
            let Some(host) = hosts.get(id) else { return };
            let started = event::HostStarted {
                labels: host.labels.clone(),
                friendly_name: host.friendly_name.clone(),
                uptime_seconds: 0,
                version: VERSION.into(),
            };
            (started, host.heartbeat())
        };
        self.publish(id, event::HOST_STARTED, started).await;
        self.publish(id, event::HOST_HEARTBEAT, heartbeat).await;
    }

    async fn reply<T: Serialize>(&self, msg: &Message, response: CtlResponse<T>) {
        let Some(reply) = msg.reply.clone() else {
            return;
        };
        if let Ok(payload) = serde_json::to_vec(&response) {
            let _ = self.client.publish(reply, payload.into()).await;
        }
    }

    async fn serve(
        self: Arc<Self>,
        mut requests: futures::stream::SelectAll<async_nats::Subscriber>,
    ) {
        let prefix = format!("{}.", self.subjects.prefix());
        while let Some(msg) = requests.next().await {
            let Some(operation) = msg.subject.as_str().strip_prefix(&prefix) else {
                continue;
            };
            let parts: Vec<&str> = operation.splitn(3, '.').collect();
            match parts.as_slice() {
                ["host", "ping"] => self.ping(&msg).await,
                [noun, verb, host_id] if *noun != "link" && *noun != "config" => {
                    // Addressed to a host that is not ours (a real node on the same lattice) or
                    // that was killed: stay silent, as a dead host would.
                    if !lock(&self.hosts).contains_key(*host_id) {
                        continue;
                    }
                    self.host_request(&msg, noun, verb, host_id).await;
                }
                ["link", verb] => self.link_request(&msg, verb).await,
                ["config", verb, name] => self.config_request(&msg, verb, name).await,
                _ => {
                    self.reply(
                        &msg,
                        CtlResponse::<()>::error(format!(
                            "unknown control operation {operation:?}"
                        )),
                    )
                    .await
                }
            }
        }
    }

    async fn ping(&self, msg: &Message) {
        let answers: Vec<ctl::Host> = lock(&self.hosts)
            .iter()
            .map(|(id, h)| {
                let uptime = h.started.elapsed();
                ctl::Host {
                    friendly_name: h.friendly_name.clone(),
                    id: id.clone(),
                    labels: h.labels.clone(),
                    lattice: self.lattice.clone(),
                    uptime_human: Some(ctl::uptime_human(uptime)),
                    uptime_seconds: uptime.as_secs(),
                    version: Some(VERSION.into()),
                    ..Default::default()
                }
            })
            .collect();
        for answer in answers {
            self.reply(msg, CtlResponse::ok(answer)).await;
        }
    }

    async fn host_request(&self, msg: &Message, noun: &str, verb: &str, host_id: &str) {
        let counters = &self.counters;
        match (noun, verb) {
            ("host", "get") => {
                let inventory = lock(&self.hosts).get(host_id).map(|h| {
                    let uptime = h.started.elapsed();
                    HostInventory {
                        components: h.component_descriptions(),
                        providers: h.provider_descriptions(),
                        host_id: host_id.into(),
                        friendly_name: h.friendly_name.clone(),
                        labels: h.labels.clone(),
                        version: VERSION.into(),
                        uptime_human: ctl::uptime_human(uptime),
                        uptime_seconds: uptime.as_secs(),
                    }
                });
                if let Some(inventory) = inventory {
                    self.reply(msg, CtlResponse::ok(inventory)).await;
                }
            }
            ("host", "stop") => {
                counters.commands.fetch_add(1, Ordering::Relaxed);
                self.reply(msg, CtlResponse::success("stopping")).await;
                let labels = lock(&self.hosts).remove(host_id).map(|h| h.labels);
                if let Some(labels) = labels {
                    self.publish(host_id, event::HOST_STOPPED, event::HostStopped { labels })
                        .await;
                }
            }
            ("component", "scale") => {
                counters.commands.fetch_add(1, Ordering::Relaxed);
                counters.component_scales.fetch_add(1, Ordering::Relaxed);
                self.scale(msg, host_id).await
            }
            ("provider", "start") => {
                counters.commands.fetch_add(1, Ordering::Relaxed);
                counters.provider_starts.fetch_add(1, Ordering::Relaxed);
                self.start_provider(msg, host_id).await
            }
            ("provider", "stop") => {
                counters.commands.fetch_add(1, Ordering::Relaxed);
                counters.provider_stops.fetch_add(1, Ordering::Relaxed);
                self.stop_provider(msg, host_id).await
            }
            ("label", "put") | ("label", "del") => {
                counters.commands.fetch_add(1, Ordering::Relaxed);
                self.label(msg, verb, host_id).await
            }
            _ => {
                self.reply(
                    msg,
                    CtlResponse::<()>::error(format!(
                        "{noun}.{verb} is not supported by simulated hosts"
                    )),
                )
                .await
            }
        }
    }

    async fn scale(&self, msg: &Message, host_id: &str) {
        let cmd: ScaleComponentCommand = match serde_json::from_slice(&msg.payload) {
            Ok(cmd) => cmd,
            Err(e) => {
                let error = format!("invalid component.scale request: {e}");
                return self.reply(msg, CtlResponse::<()>::error(error)).await;
            }
        };
        if cmd.component_id.is_empty() {
            let error = "component.scale needs a component_id";
            return self.reply(msg, CtlResponse::<()>::error(error)).await;
        }
        let changed = {
            let mut hosts = lock(&self.hosts);
            let Some(host) = hosts.get_mut(host_id) else {
                return;
            };
            if cmd.max_instances == 0 {
                host.components.remove(&cmd.component_id).is_some()
            } else {
                let image = if cmd.component_ref.is_empty() {
                    host.components
                        .get(&cmd.component_id)
                        .map(|c| c.image.clone())
                        .unwrap_or_default()
                } else {
                    cmd.component_ref.clone()
                };
                let instance = Instance {
                    image,
                    count: cmd.max_instances,
                    annotations: cmd.annotations.clone().unwrap_or_default(),
                };
                host.components
                    .insert(cmd.component_id.clone(), instance.clone())
                    != Some(instance)
            }
        };
        self.reply(msg, CtlResponse::success("accepted")).await;
        if changed {
            let data = event::ComponentScaled {
                annotations: cmd.annotations.unwrap_or_default(),
                host_id: host_id.into(),
                image_ref: cmd.component_ref,
                max_instances: cmd.max_instances,
                component_id: cmd.component_id,
            };
            self.publish(host_id, event::COMPONENT_SCALED, data).await;
        }
    }

    async fn start_provider(&self, msg: &Message, host_id: &str) {
        let cmd: StartProviderCommand = match serde_json::from_slice(&msg.payload) {
            Ok(cmd) => cmd,
            Err(e) => {
                let error = format!("invalid provider.start request: {e}");
                return self.reply(msg, CtlResponse::<()>::error(error)).await;
            }
        };
        if cmd.provider_id.is_empty() {
            let error = "provider.start needs a provider_id";
            return self.reply(msg, CtlResponse::<()>::error(error)).await;
        }
        let annotations = cmd.annotations.clone().unwrap_or_default();
        {
            let mut hosts = lock(&self.hosts);
            let Some(host) = hosts.get_mut(host_id) else {
                return;
            };
            host.providers.insert(
                cmd.provider_id.clone(),
                Instance {
                    image: cmd.provider_ref.clone(),
                    count: 1,
                    annotations: annotations.clone(),
                },
            );
        }
        self.reply(msg, CtlResponse::success("started")).await;
        let data = event::ProviderStarted {
            annotations,
            host_id: host_id.into(),
            image_ref: cmd.provider_ref,
            provider_id: cmd.provider_id,
        };
        self.publish(host_id, event::PROVIDER_STARTED, data).await;
    }

    async fn stop_provider(&self, msg: &Message, host_id: &str) {
        let cmd: StopProviderCommand = match serde_json::from_slice(&msg.payload) {
            Ok(cmd) => cmd,
            Err(e) => {
                let error = format!("invalid provider.stop request: {e}");
                return self.reply(msg, CtlResponse::<()>::error(error)).await;
            }
        };
        let removed = lock(&self.hosts)
            .get_mut(host_id)
            .and_then(|h| h.providers.remove(&cmd.provider_id));
        let Some(provider) = removed else {
            let error = format!("provider {} is not running on this host", cmd.provider_id);
            return self.reply(msg, CtlResponse::<()>::error(error)).await;
        };
        self.reply(msg, CtlResponse::success("stopped")).await;
        let data = event::ProviderStopped {
            annotations: provider.annotations,
            host_id: host_id.into(),
            provider_id: cmd.provider_id,
            reason: "stop requested".into(),
        };
        self.publish(host_id, event::PROVIDER_STOPPED, data).await;
    }

    async fn label(&self, msg: &Message, verb: &str, host_id: &str) {
        let labels = {
            let parsed = if verb == "put" {
                serde_json::from_slice::<HostLabel>(&msg.payload).map(|l| (l.key, Some(l.value)))
            } else {
                serde_json::from_slice::<HostLabelIdentifier>(&msg.payload).map(|l| (l.key, None))
            };
            let (key, value) = match parsed {
                Ok(parsed) => parsed,
                Err(e) => {
                    let error = format!("invalid label.{verb} request: {e}");
                    return self.reply(msg, CtlResponse::<()>::error(error)).await;
                }
            };
            let mut hosts = lock(&self.hosts);
            let Some(host) = hosts.get_mut(host_id) else {
                return;
            };
            match value {
                Some(value) => host.labels.insert(key, value),
                None => host.labels.remove(&key),
            };
            host.labels.clone()
        };
        self.reply(msg, CtlResponse::success("")).await;
        let data = serde_json::json!({ "host_id": host_id, "labels": labels });
        self.publish(host_id, "labels_changed", data).await;
    }

    /// Lattice-wide link requests; one host of the queue group answers, like a real node.
    async fn link_request(&self, msg: &Message, verb: &str) {
        let source = self.any_host();
        match verb {
            "put" => {
                self.counters.commands.fetch_add(1, Ordering::Relaxed);
                let link: Link = match serde_json::from_slice(&msg.payload) {
                    Ok(link) => link,
                    Err(e) => {
                        let error = format!("invalid link.put request: {e}");
                        return self.reply(msg, CtlResponse::<()>::error(error)).await;
                    }
                };
                let value = serde_json::to_vec(&link).unwrap_or_default();
                match self.links.put(link.key(), value.into()).await {
                    Ok(_) => {
                        self.reply(msg, CtlResponse::success("")).await;
                        self.publish(&source, event::LINKDEF_SET, &link).await;
                    }
                    Err(e) => {
                        let error = format!("cannot store link {}: {e}", link.key());
                        self.reply(msg, CtlResponse::<()>::error(error)).await
                    }
                }
            }
            "del" => {
                self.counters.commands.fetch_add(1, Ordering::Relaxed);
                let del: DeleteLinkRequest = match serde_json::from_slice(&msg.payload) {
                    Ok(del) => del,
                    Err(e) => {
                        let error = format!("invalid link.del request: {e}");
                        return self.reply(msg, CtlResponse::<()>::error(error)).await;
                    }
                };
                let key = ctl::link_key(
                    &del.source_id,
                    &del.name,
                    &del.wit_namespace,
                    &del.wit_package,
                );
                match self.links.delete(&key).await {
                    Ok(()) => {
                        self.reply(msg, CtlResponse::success("")).await;
                        let data = event::LinkdefDeleted {
                            source_id: del.source_id,
                            name: del.name,
                            wit_namespace: del.wit_namespace,
                            wit_package: del.wit_package,
                        };
                        self.publish(&source, event::LINKDEF_DELETED, data).await;
                    }
                    Err(e) => {
                        let error = format!("cannot delete link {key}: {e}");
                        self.reply(msg, CtlResponse::<()>::error(error)).await
                    }
                }
            }
            "get" => {
                let links = self.all_links().await;
                self.reply(msg, CtlResponse::ok(links)).await
            }
            _ => {
                let error = format!("link.{verb} is not supported");
                self.reply(msg, CtlResponse::<()>::error(error)).await
            }
        }
    }

    async fn all_links(&self) -> Vec<Link> {
        let Ok(keys) = self.links.keys().await else {
            return Vec::new();
        };
        let keys: Vec<String> = keys.filter_map(|k| async { k.ok() }).collect().await;
        let mut links = Vec::new();
        for key in keys {
            if let Ok(Some(value)) = self.links.get(&key).await {
                if let Ok(link) = serde_json::from_slice(&value) {
                    links.push(link);
                }
            }
        }
        links
    }

    async fn config_request(&self, msg: &Message, verb: &str, name: &str) {
        let source = self.any_host();
        let event_data = event::ConfigEvent {
            config_name: name.into(),
        };
        match verb {
            "put" => {
                self.counters.commands.fetch_add(1, Ordering::Relaxed);
                let values: BTreeMap<String, String> = match serde_json::from_slice(&msg.payload) {
                    Ok(values) => values,
                    Err(e) => {
                        let error = format!("invalid config.put request: {e}");
                        return self.reply(msg, CtlResponse::<()>::error(error)).await;
                    }
                };
                let value = serde_json::to_vec(&values).unwrap_or_default();
                match self.configs.put(name, value.into()).await {
                    Ok(_) => {
                        self.reply(msg, CtlResponse::success("")).await;
                        self.publish(&source, event::CONFIG_SET, event_data).await;
                    }
                    Err(e) => {
                        let error = format!("cannot store config {name}: {e}");
                        self.reply(msg, CtlResponse::<()>::error(error)).await
                    }
                }
            }
            "get" => {
                let values: BTreeMap<String, String> = match self.configs.get(name).await {
                    Ok(Some(value)) => serde_json::from_slice(&value).unwrap_or_default(),
                    _ => BTreeMap::new(),
                };
                self.reply(msg, CtlResponse::ok(values)).await
            }
            "del" => {
                self.counters.commands.fetch_add(1, Ordering::Relaxed);
                match self.configs.delete(name).await {
                    Ok(()) => {
                        self.reply(msg, CtlResponse::success("")).await;
                        self.publish(&source, event::CONFIG_DELETED, event_data)
                            .await;
                    }
                    Err(e) => {
                        let error = format!("cannot delete config {name}: {e}");
                        self.reply(msg, CtlResponse::<()>::error(error)).await
                    }
                }
            }
            _ => {
                let error = format!("config.{verb} is not supported");
                self.reply(msg, CtlResponse::<()>::error(error)).await
            }
        }
    }

    /// The host named as the source of lattice-wide events.
    fn any_host(&self) -> String {
        lock(&self.hosts).keys().next().cloned().unwrap_or_default()
    }
}

/// Sends every host's heartbeat once per `interval`, spread over the interval in slices.
async fn heartbeats(lattice: Arc<Lattice>, ids: Vec<String>, interval: Duration) {
    if ids.is_empty() {
        return;
    }
    const SLICE: Duration = Duration::from_millis(100);
    let slices = (interval.as_millis() / SLICE.as_millis()).max(1) as usize;
    let per_slice = ids.len().div_ceil(slices).max(1);
    let mut tick = tokio::time::interval(SLICE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Everyone has just sent a first heartbeat with host_started.
    tick.tick().await;
    let mut cursor = 0;
    loop {
        tick.tick().await;
        for _ in 0..per_slice {
            let id = &ids[cursor % ids.len()];
            cursor += 1;
            let heartbeat = lock(&lattice.hosts).get(id).map(Host::heartbeat);
            if let Some(heartbeat) = heartbeat {
                lattice.publish(id, event::HOST_HEARTBEAT, heartbeat).await;
            }
        }
    }
}
