//! The state of one node and what it does with it, one job per file:
//!
//! - [`control`]: the control interface's requests, as this host answers them (the server
//!   itself, with its checks and replies, is `trellis_bus::control`, shared with simulated
//!   hosts);
//! - [`scaling`]: components scaled up and down, in arrival order per component;
//! - [`update`]: a running component moved to another image, in line with its scales;
//! - [`providers`]: the built-in providers, and the HTTP listeners their links ask for;
//! - [`links`]: the lattice's links and configs as they change, and what they give each
//!   component here (config, grants);
//! - [`events`]: events, heartbeats and what the host says about itself (ping, inventory,
//!   labels);
//! - [`call_server`]: the lattice calls to components running here.

mod call_server;
mod control;
mod events;
mod links;
mod providers;
mod scaling;
mod update;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use tokio::sync::{watch, Notify};
use trellis_bus::lattice_data::LatticeData;
use trellis_bus::link_specs::LinkTable;

use crate::calls::LatticeCalls;
use crate::component::Components;
use crate::engine::ComponentRuntime;
use crate::guest::{KeyValue, Services};
use crate::http_server::HttpServer;
use crate::limits::Limits;
use crate::outgoing::OwnListeners;
use crate::NodeConfig;
pub(crate) use events::heartbeats;
pub(crate) use links::{watch_configs, watch_links};

pub(crate) struct Host {
    pub(crate) id: String,
    pub(crate) lattice: String,
    pub(crate) friendly_name: String,
    nats_url: String,
    started: Instant,
    pub(crate) client: async_nats::Client,
    /// The lattice's links and configs.
    data: LatticeData,
    labels: RwLock<BTreeMap<String, String>>,
    pub(crate) components: Components,
    providers: RwLock<BTreeMap<String, providers::RunningProvider>>,
    /// Every link of the lattice, by `Link::key()`, as last seen in the link bucket.
    links: RwLock<LinkTable>,
    runtime: ComponentRuntime,
    pub(crate) http: HttpServer,
    services: Arc<Services>,
    /// Per component running here, the task taking its lattice calls and how to stop it.
    call_takers: Mutex<HashMap<String, call_server::CallTaker>>,
    /// Held (read) by every lattice call being answered; taken (write) to drain them.
    calls_in_flight: Arc<tokio::sync::RwLock<()>>,
    /// Wakes the heartbeat task so the controller learns about a change at once.
    changed: Notify,
    /// What the machine has and uses, sampled for each heartbeat.
    resources: crate::resources::Resources,
    /// Scale commands per component, so that the last one to arrive wins.
    scale_queues: Mutex<HashMap<String, scaling::ScaleQueue>>,
    /// Serialises HTTP route reconciliation.
    routes_lock: tokio::sync::Mutex<()>,
    limits: Limits,
    /// Set when a `host.stop` request arrives.
    pub(crate) stop_requested: watch::Sender<bool>,
}

impl Host {
    pub(crate) fn new(
        id: String,
        config: &NodeConfig,
        client: async_nats::Client,
        data: LatticeData,
    ) -> anyhow::Result<Self> {
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
        labels.extend(config.labels.clone());
        let friendly_name = config
            .friendly_name
            .clone()
            .unwrap_or_else(|| format!("trellis-{}", id[1..7].to_lowercase()));
        let components = Components::default();
        let services = Arc::new(Services {
            keyvalue: KeyValue::new(
                trellis_bus::jetstream(&client, config.jetstream_domain.as_deref()),
                config.limits.kv_bucket_max_bytes,
            ),
            calls: Arc::new(LatticeCalls::new(client.clone(), config.lattice.clone())),
            limits: config.limits.clone(),
            own_listeners: OwnListeners::default(),
        });
        Ok(Self {
            lattice: config.lattice.clone(),
            friendly_name,
            nats_url: config.nats_url.clone(),
            started: Instant::now(),
            resources: Default::default(),
            client,
            data,
            labels: RwLock::new(labels),
            http: HttpServer::new(id.clone(), components.clone(), services.clone()),
            services,
            call_takers: Mutex::default(),
            calls_in_flight: Arc::default(),
            components,
            providers: RwLock::default(),
            links: RwLock::default(),
            runtime: ComponentRuntime::new(config)?,
            changed: Notify::new(),
            scale_queues: Mutex::default(),
            routes_lock: tokio::sync::Mutex::new(()),
            limits: config.limits.clone(),
            stop_requested: watch::channel(false).0,
            id,
        })
    }

    /// Asks for a heartbeat now, so the controller converges without waiting for the next tick.
    fn changed(&self) {
        self.changed.notify_one();
    }

    pub(crate) fn labels(&self) -> BTreeMap<String, String> {
        read(&self.labels).clone()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}
