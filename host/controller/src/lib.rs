//! The trellis controller: keeps what runs on a lattice matching the deployed manifests.
//!
//! It owns the manifest store (JetStream KV), answers the wadm-compatible API, builds lattice
//! state from events, and runs the reconcile loop ([`reconciler`]) that asks scaler plugins
//! (through `trellis-runtime`) what to do and sends their commands over the wasmCloud control
//! interface. It never runs application code and never decides placement itself.

pub mod api;
pub mod bodies;
pub mod churn;
pub mod commands;
pub mod cost;
pub mod executor;
pub mod extensions;
pub mod health;
pub mod history;
pub mod isolation;
mod listing;
pub mod notify;
pub mod ownership;
pub mod reconciler;
pub mod rollout;
pub mod state;
pub mod store;
pub mod validate;
pub mod validations;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use trellis_lattice::ctl;
use trellis_runtime::{Runtime, RuntimeConfig};

pub use reconciler::LoopSettings;

/// How a controller is set up.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub nats_url: String,
    /// The lattices this controller manages.
    pub lattices: Vec<String>,
    pub plugin_dir: PathBuf,
    pub runtime: RuntimeConfig,
    pub settings: LoopSettings,
    /// How often the plugin folder is checked for changes.
    pub plugin_poll: Duration,
    /// What the manifest store keeps, and the durability of the controller's buckets.
    pub store: store::StoreSettings,
    /// The wadm API's subject prefix (wadm's `--api-prefix`): the API is served on
    /// `{api_prefix}.{lattice}.model.*`. Statuses, events and trellis's extensions keep their
    /// subjects.
    pub api_prefix: String,
    /// The JetStream domain of the controller's buckets and streams (wadm's `-d`), for a
    /// controller whose JetStream is in another domain (a leaf node's hub); `None`: the
    /// account's own JetStream.
    pub jetstream_domain: Option<String>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".into(),
            lattices: vec!["default".into()],
            plugin_dir: PathBuf::from("plugins"),
            runtime: RuntimeConfig::default(),
            settings: LoopSettings::default(),
            plugin_poll: Duration::from_millis(250),
            store: store::StoreSettings::default(),
            api_prefix: trellis_lattice::api::DEFAULT_API_PREFIX.into(),
            jetstream_domain: None,
        }
    }
}

/// A running controller.
pub struct Controller {
    runtime: Arc<Runtime>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Per lattice: this controller's id in the ownership buckets.
    ids: Vec<(String, ownership::LeaseHandle)>,
}

impl Controller {
    pub async fn start(config: ControllerConfig) -> anyhow::Result<Self> {
        Self::start_with_options(config, async_nats::ConnectOptions::new()).await
    }

    /// Like [`Controller::start`], connecting to `config.nats_url` with `options` (credentials,
    /// TLS): the CLI builds them from its connection flags.
    pub async fn start_with_options(
        config: ControllerConfig,
        options: async_nats::ConnectOptions,
    ) -> anyhow::Result<Self> {
        let api_prefix =
            trellis_lattice::api::api_prefix(&config.api_prefix).map_err(anyhow::Error::msg)?;
        let mut runtime_config = config.runtime.clone();
        runtime_config.plugin_dir = config.plugin_dir.clone();
        let runtime =
            Arc::new(Runtime::new(runtime_config).context("starting the plugin runtime")?);
        // Compiling plugins takes a while; do it off the async workers.
        let loading = Arc::clone(&runtime);
        tokio::task::spawn_blocking(move || loading.reload())
            .await
            .context("loading plugins")?;
        let plugins = runtime.plugins();
        if plugins.by_file.is_empty() {
            tracing::warn!(dir = %config.plugin_dir.display(), "no plugins loaded: every trait will report that no plugin handles it");
        }
        runtime.watch(config.plugin_poll);

        let client =
            trellis_bus::connect(&config.nats_url, options.name("trellis-controller")).await?;
        let js = trellis_bus::jetstream(&client, config.jetstream_domain.as_deref());
        let in_domain = config
            .jetstream_domain
            .as_ref()
            .map(|d| format!(" in JetStream domain {d}"))
            .unwrap_or_default();
        let mut tasks = Vec::new();
        let mut ids = Vec::new();
        let validations = validations::Validations::default();
        let durability = config.store.durability;
        for lattice in &config.lattices {
            let store = store::ManifestStore::open(&js, lattice, &config.store)
                .await
                .with_context(|| {
                    format!("opening the manifest store of lattice {lattice}{in_domain}")
                })?;
            let links =
                trellis_bus::open_durable_bucket(&js, &ctl::link_bucket(lattice), durability)
                    .await?;
            let configs =
                trellis_bus::open_durable_bucket(&js, &ctl::config_bucket(lattice), durability)
                    .await?;
            let statuses = reconciler::Statuses::default();
            let events = notify::ManifestEvents::new(client.clone(), lattice);
            let api = api::ApiServer {
                lattice: lattice.clone(),
                subjects: trellis_lattice::api::Subjects::with_prefix(&api_prefix, lattice),
                client: client.clone(),
                store: store.clone(),
                statuses: Arc::clone(&statuses),
                runtime: Arc::clone(&runtime),
                validations: validations.clone(),
                events: events.clone(),
            };
            // Subscribe here, not in the tasks, so that everything is listening when `start`
            // returns (see the `sync` below).
            let requests = api.subscribe().await?;
            let name = lattice.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = api.run(requests).await {
                    tracing::error!(lattice = %name, "API server stopped: {e:#}");
                }
            }));
            let plugin_requests = client
                .subscribe(trellis_lattice::api::Subjects::new(lattice).plugin_list())
                .await?;
            let (plugin_client, plugin_runtime) = (client.clone(), Arc::clone(&runtime));
            tasks.push(tokio::spawn(async move {
                if let Err(e) =
                    api::ApiServer::serve_plugins(plugin_client, plugin_requests, plugin_runtime)
                        .await
                {
                    tracing::error!("plugin API stopped: {e:#}");
                }
            }));
            let validate_requests = client
                .queue_subscribe(
                    trellis_lattice::api::Subjects::new(lattice).validate(),
                    "trellis-api".into(),
                )
                .await?;
            let (validate_client, validate_runtime) = (client.clone(), Arc::clone(&runtime));
            let validate_slots = validations.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = api::ApiServer::serve_validate(
                    validate_client,
                    validate_requests,
                    validate_runtime,
                    validate_slots,
                )
                .await
                {
                    tracing::error!("validate API stopped: {e:#}");
                }
            }));
            let status_kv = trellis_bus::open_durable_bucket(
                &js,
                &reconciler::status_bucket(lattice),
                durability,
            )
            .await?;
            let (ownership, ownership_watches) =
                ownership::Ownership::start(&js, lattice, config.settings.lease, durability)
                    .await
                    .with_context(|| format!("joining the controllers of lattice {lattice}"))?;
            ids.push((lattice.clone(), ownership.handle()));
            let (query_tx, query_rx) = tokio::sync::mpsc::channel(16);
            let extensions = extensions::ExtensionServer {
                lattice: lattice.clone(),
                client: client.clone(),
                store: store.clone(),
                queries: query_tx,
                events,
            };
            let extension_requests = extensions.subscribe().await?;
            tasks.push(tokio::spawn(async move {
                if let Err(e) = extensions.run(extension_requests).await {
                    tracing::error!("API extensions stopped: {e:#}");
                }
            }));
            let inputs = reconciler::Inputs::open(
                &js,
                lattice,
                &config.settings,
                store.kv(),
                &links,
                &configs,
                &status_kv,
                ownership_watches,
                query_rx,
                &client,
            )
            .await?;
            let reconciler = reconciler::Reconciler::new(
                lattice,
                client.clone(),
                Arc::clone(&runtime),
                config.settings.clone(),
                (statuses, status_kv),
                ownership,
                store.clone(),
            );
            let name = lattice.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = reconciler.run(inputs).await {
                    tracing::error!(lattice = %name, "reconcile loop stopped: {e:#}");
                }
            }));
            tracing::info!(lattice = %lattice, nats = %config.nats_url, api = %api_prefix, plugins = %config.plugin_dir.display(), "controller serving lattice");
        }
        trellis_bus::sync(&client).await?;
        Ok(Self {
            runtime,
            tasks,
            ids,
        })
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// This controller's id on `lattice` (as the ownership buckets name it), if it serves it.
    pub fn id(&self, lattice: &str) -> Option<String> {
        self.ids
            .iter()
            .find(|(l, _)| l == lattice)
            .map(|(_, handle)| handle.id())
    }

    /// Stops at once, as a crash would: nothing is released, so other controllers take this
    /// one's apps over only when its lease runs out.
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
