//! A trellis node: one lattice host that runs WebAssembly components.
//!
//! A node joins a lattice over NATS, obeys the wasmCloud control interface v1
//! (`wasmbus.ctl.v1.{lattice}.…`), publishes CloudEvents and heartbeats on
//! `wasmbus.evt.{lattice}.…`, runs components with wasmtime (WASI 0.2, `wasi:http`) and serves
//! the built-in HTTP server provider. Components also get key-value on JetStream, runtime
//! config and logging (`guest`), and calls to other components of the lattice by name over
//! NATS (`calls`). It decides nothing: what runs where is the controller's job. Wire types come
//! from `trellis-lattice`, the control-interface server from `trellis-bus` (shared with
//! simulated hosts); this crate only does I/O with them.
//!
//! The modules in layers, each using only modules listed before it:
//! - bounds and rules: `limits`, `grants`, `environment` (what a component sees), `body`;
//! - images and the lattice-call protocol: `oci`, `image`, `calls` (the calling side);
//! - what a guest gets: `outgoing` (its HTTP requests), `guest` (request state, WASI,
//!   `wasi:config`, `wasi:logging`, `wasi:keyvalue`);
//! - the engine and what runs on it: `engine`, `component`, `request` (one request served);
//! - the HTTP server provider: `http_server`;
//! - the node itself: `host`, split by job (control requests, scaling, providers and routes,
//!   links and configs, events and heartbeats, the call server).

mod body;
mod calls;
mod component;
pub mod device;
mod engine;
mod environment;
mod grants;
mod guest;
mod host;
mod http_server;
mod image;
pub mod limits;
mod oci;
mod outgoing;
mod request;
mod resources;
mod traffic;
mod waiting;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;
use trellis_bus::control::{Addressed, ControlInterface};
use trellis_bus::lattice_data::LatticeData;

use crate::host::Host;
pub use crate::limits::Limits;
// Public, hidden, only for the property tests and fuzz targets of image reference parsing.
#[doc(hidden)]
pub use crate::oci::reference as oci_reference;

/// How long `stop` waits for in-flight HTTP requests before closing their connections.
const HTTP_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What a node needs to join a lattice.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub nats_url: String,
    pub lattice: String,
    /// Labels advertised in heartbeats, on top of `hostcore.os/arch/osfamily`.
    pub labels: BTreeMap<String, String>,
    pub heartbeat_interval: Duration,
    pub friendly_name: Option<String>,
    /// The folders file images (`file://…` or a path) may be read from; none by default, so a
    /// node reads no file image unless told where (`trellis node --allow-images DIR`). OCI and
    /// built-in images do not need one. See the `image` module for the rules and why.
    pub allowed_image_dirs: Vec<PathBuf>,
    /// The largest image the node reads, from a file or a registry (64 MiB by default).
    pub max_image_bytes: u64,
    /// How long one pull from a registry, manifest and component together, may take (5 min by
    /// default).
    pub image_pull_timeout: Duration,
    /// The bounds on what components may use ([`limits`]).
    pub limits: Limits,
    /// The JetStream domain of the lattice's buckets (links, configs, key-value), when it is
    /// not the server's own (a leaf node whose hub keeps them); controllers use the same.
    pub jetstream_domain: Option<String>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".into(),
            lattice: "default".into(),
            labels: BTreeMap::new(),
            heartbeat_interval: trellis_lattice::liveness::HEARTBEAT_INTERVAL,
            friendly_name: None,
            allowed_image_dirs: Vec::new(),
            max_image_bytes: image::MAX_IMAGE_BYTES,
            image_pull_timeout: image::PULL_TIMEOUT,
            limits: Limits::default(),
            jetstream_domain: None,
        }
    }
}

/// A running node. Dropping it without [`Node::stop`] aborts its tasks without saying goodbye.
pub struct Node {
    host: Arc<Host>,
    stop_requested: watch::Receiver<bool>,
    tasks: Tasks,
}

impl Node {
    /// Connects to NATS, opens (or creates) the lattice's KV buckets, subscribes to the control
    /// interface, publishes `host_started` and starts heartbeats.
    pub async fn start(config: NodeConfig) -> anyhow::Result<Node> {
        Self::start_with_options(config, async_nats::ConnectOptions::new()).await
    }

    /// Like [`Node::start`], connecting to `config.nats_url` with `options` (credentials, TLS):
    /// the CLI builds them from its connection flags.
    pub async fn start_with_options(
        config: NodeConfig,
        options: async_nats::ConnectOptions,
    ) -> anyhow::Result<Node> {
        // Shaped like wasmCloud's, by the generator simulated hosts use too.
        let host_id = trellis_lattice::host_id::generate();
        let client = trellis_bus::connect(
            &config.nats_url,
            options.name(format!("trellis-node {host_id}")),
        )
        .await?;
        let data =
            LatticeData::open_in(&client, &config.lattice, config.jetstream_domain.as_deref())
                .await
                .with_context(|| match &config.jetstream_domain {
                    Some(domain) => {
                        format!("opening the lattice's buckets in JetStream domain {domain}")
                    }
                    None => "opening the lattice's buckets".to_string(),
                })?;
        let host = Arc::new(Host::new(host_id, &config, client, data)?);

        let control =
            ControlInterface::subscribe(&host.client, &host.lattice, Addressed::To(&host.id))
                .await?;
        let stop_requested = host.stop_requested.subscribe();
        let mut tasks = Tasks::default();
        tasks.push(tokio::spawn(control.serve(host.clone())));
        tasks.push(tokio::spawn(host::watch_links(host.clone())));
        tasks.push(tokio::spawn(host::watch_configs(host.clone())));

        // Make sure the server has our subscriptions before anyone learns we exist.
        trellis_bus::sync(&host.client).await?;
        host.publish_started().await;
        // The first heartbeat goes out at once, right after host_started.
        tasks.push(tokio::spawn(host::heartbeats(
            host.clone(),
            config.heartbeat_interval,
        )));
        info!(host_id = %host.id, lattice = %host.lattice, friendly_name = %host.friendly_name, "node started");
        Ok(Node {
            host,
            stop_requested,
            tasks,
        })
    }

    /// This node's id: an nkey-shaped public key (56 characters starting with `N`).
    pub fn host_id(&self) -> &str {
        &self.host.id
    }

    /// Resolves when a `host.stop` request for this host has arrived (or never).
    pub async fn stopped(&self) {
        let mut rx = self.stop_requested.clone();
        if rx.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Graceful stop: stops taking commands, closes HTTP listeners (finishing in-flight
    /// requests), publishes `host_stopped` and closes the connection.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        info!(host_id = %self.host.id, "node stopping");
        self.tasks.abort_all();
        // Leave the call queue groups first, so callers turn to other nodes while this one
        // finishes what it has.
        tokio::join!(
            self.host.stop_taking_all_calls(HTTP_DRAIN_TIMEOUT),
            self.host.http.shutdown(HTTP_DRAIN_TIMEOUT)
        );
        self.host.components.clear();
        self.host.publish_stopped().await;
        self.host
            .client
            .flush()
            .await
            .context("cannot flush the NATS connection while stopping")?;
        info!(host_id = %self.host.id, "node stopped");
        Ok(())
    }
}

/// Background tasks of a node, aborted together.
#[derive(Default)]
struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    fn push(&mut self, task: JoinHandle<()>) {
        self.0.push(task);
    }
    fn abort_all(&mut self) {
        for task in self.0.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.abort_all();
    }
}

impl Drop for Node {
    /// Without [`Node::stop`]: like a crash, everything stops at once (after `stop` there is
    /// nothing left to do here).
    fn drop(&mut self) {
        self.tasks.abort_all();
        self.host.abort_call_takers();
        self.host.http.abort_all();
    }
}
