//! A simulated lattice: N virtual hosts in one process.
//!
//! Each virtual host obeys the wasmCloud control interface v1 the way a trellis node does
//! (component scale, provider start/stop, links and configs, labels, ping, inventory, stop) and
//! publishes the same CloudEvents (host_started, heartbeats, component_scaled,
//! provider_started, …), but runs no wasm: a component "runs" as soon as its scale command is
//! accepted. That makes lattices of 10,000 hosts cheap enough to test a controller against on
//! one machine. All hosts share one NATS connection and one subscription per subject pattern;
//! messages are dispatched to hosts by the id in the subject. The control interface is the
//! node's own server ([`trellis_bus::control`]), so a simulated host makes the same checks and
//! gives the same replies; what a host does with an accepted request is in the `hosts` module.
//!
//! Wire types and host ids come from `trellis-lattice`; links and configs live in the same KV
//! buckets real nodes use, so a simulated lattice and real nodes can share a lattice.

mod hosts;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use trellis_bus::control::{Addressed, ControlInterface};
use trellis_bus::lattice_data::LatticeData;
use trellis_lattice::event;

pub use crate::hosts::Counters;
use crate::hosts::{lock, Host, Lattice};

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
    /// Report every provider's image in another form than the one asked for, as a quirky host
    /// does (a wasmCloud host reports `wasmcloud+builtin://http-server` as `http-server`),
    /// but surely different: what makes a controller churn, for testing its guard.
    pub misreport_provider_images: bool,
    /// The JetStream domain of the lattice's buckets, as a node's `jetstream_domain`.
    pub jetstream_domain: Option<String>,
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
            misreport_provider_images: false,
            jetstream_domain: None,
        }
    }
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
        let data =
            LatticeData::open_in(&client, &config.lattice, config.jetstream_domain.as_deref())
                .await?;
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
            hosts.insert(id.clone(), Host::new(format!("sim-{i}"), labels));
            ids.push(id);
        }
        let control =
            ControlInterface::subscribe(&client, &config.lattice, Addressed::ToAny).await?;
        let lattice = Arc::new(Lattice {
            lattice: config.lattice.clone(),
            client,
            hosts: std::sync::Mutex::new(hosts),
            data,
            counters: Counters::default(),
            misreport_provider_images: config.misreport_provider_images,
        });
        let mut tasks = vec![tokio::spawn(control.serve(Arc::clone(&lattice)))];
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
                h.instances_of(component_id)
                    .map(|count| (id.clone(), count))
            })
            .collect()
    }

    /// The ids of the running hosts where provider `provider_id` runs.
    pub fn provider_hosts(&self, provider_id: &str) -> Vec<String> {
        lock(&self.lattice.hosts)
            .iter()
            .filter(|(_, h)| h.runs_provider(provider_id))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Per component id: the total instance count over the running hosts, and on how many
    /// hosts it runs (one pass over every host, for checks on large lattices).
    pub fn instance_totals(&self) -> HashMap<String, (u32, usize)> {
        let mut totals: HashMap<String, (u32, usize)> = HashMap::new();
        for host in lock(&self.lattice.hosts).values() {
            for (id, count) in host.instances() {
                let entry = totals.entry(id.clone()).or_default();
                entry.0 += count;
                entry.1 += 1;
            }
        }
        totals
    }

    /// Component instances per running host (zero for a host that runs none), in no order:
    /// how evenly placement spread the work.
    pub fn host_loads(&self) -> Vec<u32> {
        lock(&self.lattice.hosts)
            .values()
            .map(|h| h.instances().map(|(_, count)| count).sum())
            .collect()
    }

    /// The running host with the most component instances, and how many it runs.
    pub fn busiest_host(&self) -> Option<(String, u32)> {
        lock(&self.lattice.hosts)
            .iter()
            .map(|(id, h)| (id.clone(), h.instances().map(|(_, count)| count).sum()))
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
