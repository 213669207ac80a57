//! The state of one node and what it does with it: scale components, run providers, keep
//! labels, links and HTTP routes, publish events and heartbeats.
//!
//! The control interface (`ctl`) parses requests and replies; everything that changes what runs
//! happens here.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;
use tracing::{debug, error, info, warn, Instrument as _};
use trellis_lattice::ctl::{
    self, ComponentDescription, HostInventory, Link, ProviderDescription, ScaleComponentCommand,
    StartProviderCommand, Subjects,
};
use trellis_lattice::event::{self, CloudEvent};

use crate::calls::{self, LatticeCalls};
use crate::component::{ComponentRuntime, Components, RunningComponent, Services};
use crate::environment::ComponentEnv;
use crate::grants::{self, Grants};
use crate::http_server::{HttpServer, ListenerChange, Route};
use crate::keyvalue::KeyValue;
use crate::limits::Limits;
use crate::outgoing::OwnListeners;
use crate::store::LatticeStores;
use crate::NodeConfig;

/// The image reference of the built-in HTTP server provider.
pub(crate) const HTTP_SERVER_REF: &str = "builtin:http-server";
/// The image reference of the built-in key-value provider. Key-value works on every node
/// whether or not it runs (see [`crate::keyvalue`]); it exists as a provider so that manifests
/// can link components to it, with the bucket in the link's target config.
pub(crate) const KEYVALUE_REF: &str = "builtin:keyvalue";
/// The link config key naming a component's key-value bucket (as wasmCloud's NATS provider).
const BUCKET_KEY: &str = "bucket";
/// Where the HTTP server listens when neither the provider's nor the link's config says
/// `address` (wasmCloud's HTTP server provider default).
pub(crate) const DEFAULT_HTTP_ADDRESS: &str = "0.0.0.0:8000";
/// Event published when an HTTP listener cannot bind (wasmCloud's provider health event).
const HEALTH_CHECK_FAILED: &str = "health_check_failed";
const HEALTH_CHECK_PASSED: &str = "health_check_passed";
/// Event published when labels change (as wasmCloud hosts do).
const LABELS_CHANGED: &str = "labels_changed";

/// Whether `image_ref` names the built-in HTTP server. wasmCloud's own image refs
/// (`ghcr.io/wasmcloud/http-server:0.2x`) are aliases so that wadm manifests run unchanged.
pub(crate) fn is_http_server(image_ref: &str) -> bool {
    image_ref == HTTP_SERVER_REF || image_ref.contains("wasmcloud/http-server")
}

/// Whether `image_ref` names the built-in key-value provider; wasmCloud's NATS key-value
/// provider is an alias, as it keeps its data in the same place.
pub(crate) fn is_keyvalue(image_ref: &str) -> bool {
    image_ref == KEYVALUE_REF || image_ref.contains("wasmcloud/keyvalue-nats")
}

/// A built-in capability provider running on this node.
#[derive(Debug, Clone)]
pub(crate) struct RunningProvider {
    pub(crate) id: String,
    pub(crate) image_ref: String,
    pub(crate) annotations: BTreeMap<String, String>,
    /// Named configs whose values apply to every link of this provider (e.g. `address`).
    pub(crate) config: Vec<String>,
}

pub(crate) struct Host {
    pub(crate) id: String,
    pub(crate) lattice: String,
    pub(crate) friendly_name: String,
    nats_url: String,
    started: Instant,
    pub(crate) client: async_nats::Client,
    pub(crate) subjects: Subjects,
    pub(crate) stores: LatticeStores,
    labels: RwLock<BTreeMap<String, String>>,
    pub(crate) components: Components,
    providers: RwLock<BTreeMap<String, RunningProvider>>,
    /// Every link of the lattice, by `Link::key()`, as last seen in the link bucket.
    links: RwLock<BTreeMap<String, Link>>,
    runtime: ComponentRuntime,
    pub(crate) http: HttpServer,
    services: Arc<Services>,
    /// Per component running here, the task taking its lattice calls and how to stop it.
    call_takers: Mutex<HashMap<String, CallTaker>>,
    /// Held (read) by every lattice call being answered; taken (write) to drain them.
    pub(crate) calls_in_flight: Arc<tokio::sync::RwLock<()>>,
    /// Wakes the heartbeat task so the controller learns about a change at once.
    changed: Notify,
    /// Scale commands per component, so that the last one to arrive wins.
    scale_queues: Mutex<HashMap<String, ScaleQueue>>,
    /// Serialises HTTP route reconciliation.
    routes_lock: tokio::sync::Mutex<()>,
    pub(crate) limits: Limits,
}

impl Host {
    pub(crate) fn new(
        id: String,
        config: &NodeConfig,
        client: async_nats::Client,
        stores: LatticeStores,
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
            keyvalue: KeyValue::new(client.clone(), config.limits.kv_bucket_max_bytes),
            calls: LatticeCalls::new(client.clone(), config.lattice.clone()),
            limits: config.limits.clone(),
            own_listeners: OwnListeners::default(),
        });
        Ok(Self {
            lattice: config.lattice.clone(),
            friendly_name,
            nats_url: config.nats_url.clone(),
            started: Instant::now(),
            client,
            subjects: Subjects::new(&config.lattice),
            stores,
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
            id,
        })
    }

    /// Asks for a heartbeat now, so the controller converges without waiting for the next tick.
    pub(crate) fn changed(&self) {
        self.changed.notify_one();
    }

    pub(crate) async fn publish_event(&self, kind: &str, data: impl Serialize) {
        let event = CloudEvent::new(kind, &self.id, data);
        let payload = match serde_json::to_vec(&event) {
            Ok(payload) => payload,
            Err(e) => {
                error!(host_id = %self.id, kind, error = %e, "cannot encode event");
                return;
            }
        };
        if let Err(e) = self
            .client
            .publish(event::subject(&self.lattice, kind), payload.into())
            .await
        {
            warn!(host_id = %self.id, kind, error = %e, "cannot publish event");
        }
    }

    pub(crate) async fn publish_started(&self) {
        let data = event::HostStarted {
            labels: self.labels(),
            friendly_name: self.friendly_name.clone(),
            uptime_seconds: self.started.elapsed().as_secs(),
            version: version().into(),
        };
        self.publish_event(event::HOST_STARTED, data).await;
    }

    pub(crate) async fn publish_stopped(&self) {
        let data = event::HostStopped {
            labels: self.labels(),
        };
        self.publish_event(event::HOST_STOPPED, data).await;
    }

    pub(crate) async fn publish_heartbeat(&self) {
        let uptime = self.started.elapsed();
        let data = event::HostHeartbeat {
            components: self.component_descriptions(),
            providers: self.provider_descriptions(),
            labels: self.labels(),
            friendly_name: self.friendly_name.clone(),
            uptime_seconds: uptime.as_secs(),
            uptime_human: uptime_human(uptime),
            version: version().into(),
            issuer: String::new(),
        };
        self.publish_event(event::HOST_HEARTBEAT, data).await;
    }

    /// The answer to `host.ping`.
    pub(crate) fn ping(&self) -> ctl::Host {
        let uptime = self.started.elapsed();
        ctl::Host {
            rpc_host: Some(self.nats_url.clone()),
            ctl_host: Some(self.nats_url.clone()),
            friendly_name: self.friendly_name.clone(),
            id: self.id.clone(),
            js_domain: None,
            labels: self.labels(),
            lattice: self.lattice.clone(),
            uptime_human: Some(uptime_human(uptime)),
            uptime_seconds: uptime.as_secs(),
            version: Some(version().into()),
        }
    }

    /// The answer to `host.get`.
    pub(crate) fn inventory(&self) -> HostInventory {
        let uptime = self.started.elapsed();
        HostInventory {
            components: self.component_descriptions(),
            providers: self.provider_descriptions(),
            host_id: self.id.clone(),
            friendly_name: self.friendly_name.clone(),
            labels: self.labels(),
            version: version().into(),
            uptime_human: uptime_human(uptime),
            uptime_seconds: uptime.as_secs(),
        }
    }

    fn component_descriptions(&self) -> Vec<ComponentDescription> {
        self.components
            .all()
            .iter()
            .map(|c| ComponentDescription {
                id: c.id.clone(),
                image_ref: c.image_ref.clone(),
                name: Some(c.id.clone()),
                annotations: Some(c.annotations.clone()),
                revision: 0,
                max_instances: c.max_instances,
            })
            .collect()
    }

    fn provider_descriptions(&self) -> Vec<ProviderDescription> {
        read(&self.providers)
            .values()
            .map(|p| ProviderDescription {
                id: p.id.clone(),
                image_ref: Some(p.image_ref.clone()),
                name: Some(
                    if is_keyvalue(&p.image_ref) {
                        "keyvalue"
                    } else {
                        "http-server"
                    }
                    .into(),
                ),
                revision: 0,
                annotations: Some(p.annotations.clone()),
            })
            .collect()
    }

    pub(crate) fn labels(&self) -> BTreeMap<String, String> {
        read(&self.labels).clone()
    }

    pub(crate) async fn put_label(&self, key: String, value: String) {
        write(&self.labels).insert(key, value);
        self.publish_labels_changed().await;
        self.refresh_envs().await;
    }

    /// Removes a label; false if it was not set.
    pub(crate) async fn delete_label(&self, key: &str) -> bool {
        let removed = write(&self.labels).remove(key).is_some();
        if removed {
            self.publish_labels_changed().await;
            self.refresh_envs().await;
        }
        removed
    }

    async fn publish_labels_changed(&self) {
        let data = serde_json::json!({ "host_id": self.id, "labels": self.labels() });
        self.publish_event(LABELS_CHANGED, data).await;
        self.changed();
    }

    /// Takes a place in line for scaling `component_id`; call in arrival order.
    pub(crate) fn scale_ticket(&self, component_id: &str) -> ScaleTicket {
        let mut queues = self
            .scale_queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let queue = queues.entry(component_id.to_string()).or_default();
        queue.latest += 1;
        ScaleTicket {
            seq: queue.latest,
            lock: queue.lock.clone(),
        }
    }

    fn is_latest(&self, component_id: &str, ticket: &ScaleTicket) -> bool {
        self.scale_queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(component_id)
            .is_some_and(|queue| queue.latest == ticket.seq)
    }

    /// Applies a scale command (already validated) and publishes its outcome:
    /// `component_scaled` or `component_scale_failed`. A command overtaken by a newer one for
    /// the same component is dropped: scaling is declarative, the newest count is the one
    /// wanted, and the newer command publishes the outcome.
    pub(crate) async fn scale_component(
        self: Arc<Self>,
        cmd: ScaleComponentCommand,
        ticket: ScaleTicket,
    ) {
        let span = tracing::info_span!(
            "scale",
            host_id = %self.id,
            component_id = %cmd.component_id,
            count = cmd.max_instances
        );
        // The image is read and compiled before taking the component's place in line: a slow
        // pull must not hold up a newer command for the same component. Which command applies
        // is still decided in line, below; a superseded one loads nothing it can avoid and
        // publishes nothing.
        let superseded = |host: &Self| {
            let latest = host.is_latest(&cmd.component_id, &ticket);
            if !latest {
                debug!(host_id = %host.id, component_id = %cmd.component_id, "scale command superseded by a newer one");
            }
            !latest
        };
        if superseded(&self) {
            return;
        }
        let preloaded = match self.components.get(&cmd.component_id) {
            _ if cmd.max_instances == 0 => None,
            Some(running)
                if cmd.component_ref.is_empty()
                    || running.image_ref == cmd.component_ref
                    || !cmd.allow_update =>
            {
                None
            }
            _ => Some(self.load_image(&cmd).instrument(span.clone()).await),
        };
        let _serialised = ticket.lock.lock().await;
        if superseded(&self) {
            return;
        }
        match self
            .apply_scale(&cmd, preloaded)
            .instrument(span.clone())
            .await
        {
            Ok(image_ref) => {
                span.in_scope(|| info!(%image_ref, "component scaled"));
                let annotations = cmd.annotations.clone().unwrap_or_default();
                self.publish_scaled(
                    &cmd.component_id,
                    &image_ref,
                    annotations,
                    cmd.max_instances,
                )
                .await;
            }
            Err(error) => {
                span.in_scope(|| warn!(%error, "scale failed"));
                self.publish_scale_failed(&cmd, error).await;
            }
        }
    }

    /// Changes what runs; returns the image ref now running (or last run, for a count of 0).
    /// `preloaded` is `cmd`'s image, if it was loaded before the command's turn came.
    async fn apply_scale(
        &self,
        cmd: &ScaleComponentCommand,
        preloaded: Option<Result<crate::component::LoadedComponent, String>>,
    ) -> Result<String, String> {
        if cmd.max_instances == 0 {
            self.stop_taking_calls(&cmd.component_id);
            let stopped = self.components.remove(&cmd.component_id);
            return Ok(stopped.map_or_else(|| cmd.component_ref.clone(), |c| c.image_ref.clone()));
        }
        self.check_capacity(cmd)?;
        let (image_ref, loaded) = match self.components.get(&cmd.component_id) {
            Some(running)
                if cmd.component_ref.is_empty() || running.image_ref == cmd.component_ref =>
            {
                (running.image_ref.clone(), running.loaded.clone())
            }
            Some(running) if !cmd.allow_update => {
                return Err(format!(
                    "component {} already runs image {} on this host; scale it with allow_update to change it to {}",
                    cmd.component_id, running.image_ref, cmd.component_ref
                ));
            }
            _ => {
                let loaded = match preloaded {
                    Some(loaded) => loaded?,
                    // What runs changed while the command waited: load it now.
                    None => self.load_image(cmd).await?,
                };
                (cmd.component_ref.clone(), loaded)
            }
        };
        let annotations = cmd.annotations.clone().unwrap_or_default();
        let env = self
            .component_env(&cmd.component_id, &annotations, &cmd.config)
            .await?;
        // A new count gets a new semaphore: requests in flight finish under the old one.
        self.components.insert(Arc::new(RunningComponent::new(
            cmd.component_id.clone(),
            image_ref.clone(),
            annotations,
            cmd.max_instances,
            cmd.config.clone(),
            loaded,
            env,
            self.services.clone(),
        )));
        self.take_calls(&cmd.component_id);
        Ok(image_ref)
    }

    /// Reads and compiles the image `cmd` names.
    async fn load_image(
        &self,
        cmd: &ScaleComponentCommand,
    ) -> Result<crate::component::LoadedComponent, String> {
        self.runtime.load(&cmd.component_ref).await.map_err(|e| {
            format!(
                "cannot start {} from {}: {e}",
                cmd.component_id, cmd.component_ref
            )
        })
    }

    /// Refuses a scale that would take the instances this node runs (every component's count
    /// together) past its limit.
    fn check_capacity(&self, cmd: &ScaleComponentCommand) -> Result<(), String> {
        let others: u64 = self
            .components
            .all()
            .iter()
            .filter(|c| c.id != cmd.component_id)
            .map(|c| u64::from(c.max_instances))
            .sum();
        let total = others + u64::from(cmd.max_instances);
        let limit = self.limits.max_node_instances;
        if total > u64::from(limit) {
            return Err(format!(
                "scaling {} to {} would run {total} instances on this node, over its limit of {limit} (max node instances); place it on another node or raise the limit",
                cmd.component_id, cmd.max_instances
            ));
        }
        Ok(())
    }

    /// What a component sees of the lattice: its runtime config, its grants, its identity.
    async fn component_env(
        &self,
        component_id: &str,
        annotations: &BTreeMap<String, String>,
        config_names: &[String],
    ) -> Result<ComponentEnv, String> {
        let named = self
            .stores
            .merged_config(config_names)
            .await
            .map_err(|e| format!("cannot read the runtime config of {component_id}: {e:#}"))?;
        let app = annotations.get(trellis_lattice::annotations::APP).cloned();
        let grants = self.grants_of(component_id, app.as_deref()).await?;
        ComponentEnv::new(
            component_id,
            app,
            named,
            (&self.id, &self.labels()),
            grants,
            self.limits.request_timeout,
        )
        .map_err(|e| format!("the runtime config of {component_id}: {e}"))
    }

    /// What a component's links grant it: the buckets its `wasi:keyvalue` links name in their
    /// target config (`bucket`) and the components its `wasi:http` `outgoing-handler` links
    /// point at ([`crate::grants`]).
    async fn grants_of(&self, component_id: &str, app: Option<&str>) -> Result<Grants, String> {
        let links: Vec<Link> = read(&self.links)
            .values()
            .filter(|link| link.source_id == component_id && link.wit_namespace == "wasi")
            .cloned()
            .collect();
        let mut grants = Grants {
            app_bucket: grants::app_bucket(&self.lattice, app),
            ..Grants::default()
        };
        for link in links {
            match link.wit_package.as_str() {
                "keyvalue" => {
                    let values = self
                        .stores
                        .merged_config(&link.target_config)
                        .await
                        .map_err(|e| {
                            format!("cannot read the config of link {}: {e:#}", link.key())
                        })?;
                    match values.get(BUCKET_KEY) {
                        None => {}
                        Some(bucket) if grants::valid_bucket_name(bucket) => {
                            grants.linked_buckets.push(bucket.clone())
                        }
                        Some(bucket) => return Err(format!(
                            "link {} names key-value bucket {bucket:?}, which JetStream does not accept: use letters, digits, - and _",
                            link.key()
                        )),
                    }
                }
                "http" if link.interfaces.iter().any(|i| i == "outgoing-handler") => {
                    grants.callees.insert(link.target.clone());
                }
                _ => {}
            }
        }
        Ok(grants)
    }

    /// Recomputes every running component's environment after a config, link or label change.
    pub(crate) async fn refresh_envs(&self) {
        for component in self.components.all() {
            match self
                .component_env(
                    &component.id,
                    &component.annotations,
                    &component.config_names,
                )
                .await
            {
                Ok(env) => component.set_env(env),
                Err(error) => {
                    warn!(host_id = %self.id, component_id = %component.id, %error, "keeping the component's previous config")
                }
            }
        }
    }

    /// Joins the queue group of calls to `component_id` (once).
    fn take_calls(&self, component_id: &str) {
        let mut takers = self
            .call_takers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if takers
            .get(component_id)
            .is_some_and(|t| !t.task.is_finished())
        {
            return;
        }
        let Some(subject) = calls::call_subject(&self.lattice, component_id) else {
            warn!(host_id = %self.id, component_id, "component id does not fit in a NATS subject token; it cannot be called by lattice name");
            return;
        };
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(calls::serve(
            self.client.clone(),
            subject,
            component_id.to_string(),
            self.components.clone(),
            self.calls_in_flight.clone(),
            stop_rx,
        ));
        takers.insert(component_id.to_string(), CallTaker { stop, task });
    }

    /// Leaves the component's call queue group; calls already handed to this node are still
    /// answered (or refused, if the component is gone by then, so the caller tries elsewhere).
    fn stop_taking_calls(&self, component_id: &str) {
        if let Some(taker) = self
            .call_takers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(component_id)
        {
            let _ = taker.stop.send(());
        }
    }

    /// Stops taking calls at once, dropping those in hand (a node dropped without `stop`).
    pub(crate) fn abort_call_takers(&self) {
        for (_, taker) in self
            .call_takers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
        {
            taker.task.abort();
        }
    }

    /// Leaves every call queue group, then waits up to `drain` for calls being answered.
    pub(crate) async fn stop_taking_all_calls(&self, drain: Duration) {
        let takers: Vec<_> = self
            .call_takers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        let mut tasks = Vec::with_capacity(takers.len());
        for (_, taker) in takers {
            let _ = taker.stop.send(());
            tasks.push(taker.task);
        }
        // Each task returns once it has unsubscribed and taken every call NATS had handed it;
        // then wait for those calls to be answered.
        let drained = async {
            futures::future::join_all(tasks).await;
            let _ = self.calls_in_flight.write().await;
        };
        if tokio::time::timeout(drain, drained).await.is_err() {
            warn!(host_id = %self.id, "lattice calls still in flight after {drain:?}; dropping them");
        }
    }

    async fn publish_scaled(
        &self,
        component_id: &str,
        image_ref: &str,
        annotations: BTreeMap<String, String>,
        max_instances: u32,
    ) {
        let data = event::ComponentScaled {
            annotations,
            host_id: self.id.clone(),
            image_ref: image_ref.into(),
            max_instances,
            component_id: component_id.into(),
        };
        self.publish_event(event::COMPONENT_SCALED, data).await;
        self.changed();
    }

    pub(crate) async fn publish_scale_failed(&self, cmd: &ScaleComponentCommand, error: String) {
        let data = event::ComponentScaleFailed {
            annotations: cmd.annotations.clone().unwrap_or_default(),
            host_id: self.id.clone(),
            image_ref: cmd.component_ref.clone(),
            max_instances: cmd.max_instances,
            component_id: cmd.component_id.clone(),
            error,
        };
        self.publish_event(event::COMPONENT_SCALE_FAILED, data)
            .await;
    }

    /// Starts a provider; the error says why not (and has been published as
    /// `provider_start_failed`). On success, returns what went wrong with its listeners, if
    /// anything (an address in use: the provider runs and retries, and the reply says so).
    pub(crate) async fn start_provider(
        &self,
        cmd: StartProviderCommand,
    ) -> Result<Vec<String>, String> {
        if !is_http_server(&cmd.provider_ref) && !is_keyvalue(&cmd.provider_ref) {
            let error = format!(
                "unknown provider image {:?}: this node runs only its built-in providers: the HTTP server ({HTTP_SERVER_REF}, or any image ref containing wasmcloud/http-server) and key-value ({KEYVALUE_REF}, or wasmcloud/keyvalue-nats)",
                cmd.provider_ref
            );
            warn!(host_id = %self.id, provider_id = %cmd.provider_id, %error, "provider not started");
            let data = event::ProviderStartFailed {
                host_id: self.id.clone(),
                provider_ref: cmd.provider_ref.clone(),
                provider_id: cmd.provider_id.clone(),
                error: error.clone(),
            };
            self.publish_event(event::PROVIDER_START_FAILED, data).await;
            return Err(error);
        }
        let provider = RunningProvider {
            id: cmd.provider_id.clone(),
            image_ref: cmd.provider_ref.clone(),
            annotations: cmd.annotations.clone().unwrap_or_default(),
            config: cmd.config.clone(),
        };
        write(&self.providers).insert(provider.id.clone(), provider.clone());
        info!(host_id = %self.id, provider_id = %provider.id, image_ref = %provider.image_ref, "provider started");
        let data = event::ProviderStarted {
            annotations: provider.annotations,
            host_id: self.id.clone(),
            image_ref: provider.image_ref,
            provider_id: provider.id,
        };
        self.publish_event(event::PROVIDER_STARTED, data).await;
        self.changed();
        let failures = self.reconcile_routes().await;
        Ok(failures
            .into_iter()
            .filter(|(provider_id, _)| *provider_id == cmd.provider_id)
            .map(|(_, error)| error)
            .collect())
    }

    /// Stops a provider; false if it was not running here.
    pub(crate) async fn stop_provider(&self, provider_id: &str) -> bool {
        let Some(provider) = write(&self.providers).remove(provider_id) else {
            return false;
        };
        info!(host_id = %self.id, provider_id, "provider stopped");
        self.reconcile_routes().await;
        let data = event::ProviderStopped {
            annotations: provider.annotations,
            host_id: self.id.clone(),
            provider_id: provider.id,
            reason: "stop requested".into(),
        };
        self.publish_event(event::PROVIDER_STOPPED, data).await;
        self.changed();
        true
    }

    /// Records a link seen in the link bucket; `None` removes it.
    pub(crate) async fn set_link(&self, key: &str, link: Option<Link>) {
        match link {
            Some(link) => write(&self.links).insert(key.to_string(), link),
            None => write(&self.links).remove(key),
        };
        self.reconcile_routes().await;
        self.refresh_envs().await;
    }

    /// Opens, moves and closes HTTP listeners so that each HTTP link of a provider running here
    /// has one. Returns the listeners that newly failed, as (provider id, reason); each has
    /// also been published as `health_check_failed`.
    pub(crate) async fn reconcile_routes(&self) -> Vec<(String, String)> {
        let _serialised = self.routes_lock.lock().await;
        let providers = read(&self.providers).clone();
        let links: Vec<Link> = read(&self.links)
            .values()
            .filter(|link| {
                providers.contains_key(&link.source_id)
                    && link.wit_namespace == "wasi"
                    && link.wit_package == "http"
                    && link.interfaces.iter().any(|i| i == "incoming-handler")
            })
            .cloned()
            .collect();
        let mut routes = Vec::with_capacity(links.len());
        for link in links {
            let provider = &providers[&link.source_id];
            let names: Vec<String> = provider
                .config
                .iter()
                .chain(&link.source_config)
                .cloned()
                .collect();
            let values = match self.stores.merged_config(&names).await {
                Ok(values) => values,
                Err(e) => {
                    // Better to keep the listeners as they are than to move one to a default.
                    warn!(host_id = %self.id, link = %link.key(), error = %format!("{e:#}"), "cannot read link config; HTTP routes left as they are");
                    return Vec::new();
                }
            };
            let address = values
                .get("address")
                .or_else(|| values.get("ADDRESS"))
                .cloned()
                .unwrap_or_else(|| DEFAULT_HTTP_ADDRESS.to_string());
            routes.push(Route {
                link_key: link.key(),
                provider_id: link.source_id.clone(),
                address,
                target: link.target.clone(),
            });
        }
        let mut failures = Vec::new();
        for change in self.http.apply(routes).await {
            match change {
                ListenerChange::Failed { route, error } => {
                    failures.push((route.provider_id.clone(), error.clone()));
                    let data = serde_json::json!({
                        "host_id": self.id,
                        "provider_id": route.provider_id,
                        "link": route.link_key,
                        "address": route.address,
                        "error": error,
                    });
                    self.publish_event(HEALTH_CHECK_FAILED, data).await;
                }
                ListenerChange::Recovered { route } => {
                    let data = serde_json::json!({
                        "host_id": self.id,
                        "provider_id": route.provider_id,
                        "link": route.link_key,
                        "address": route.address,
                    });
                    self.publish_event(HEALTH_CHECK_PASSED, data).await;
                }
            }
        }
        failures
    }
}

/// The task taking one component's lattice calls on this node.
struct CallTaker {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// The scale commands of one component: the newest ticket, and the lock they take in turn.
#[derive(Default)]
struct ScaleQueue {
    latest: u64,
    lock: Arc<tokio::sync::Mutex<()>>,
}

/// A scale command's place in its component's line.
pub(crate) struct ScaleTicket {
    seq: u64,
    lock: Arc<tokio::sync::Mutex<()>>,
}

/// Publishes a heartbeat every `interval`, and right after every change.
pub(crate) async fn heartbeats(host: Arc<Host>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let tick = tokio::select! {
            _ = ticks.tick() => true,
            () = host.changed.notified() => false,
        };
        host.publish_heartbeat().await;
        debug!(host_id = %host.id, "heartbeat");
        // A listener whose address was taken gets another chance on every tick.
        if tick && host.http.has_failures().await {
            host.reconcile_routes().await;
        }
    }
}

pub(crate) fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// `1d 2h 3m 4s`, leaving out leading zero units.
pub(crate) fn uptime_human(uptime: Duration) -> String {
    let secs = uptime.as_secs();
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m {s}s"),
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_reads_like_wasmcloud() {
        assert_eq!(uptime_human(Duration::from_secs(5)), "5s");
        assert_eq!(uptime_human(Duration::from_secs(65)), "1m 5s");
        assert_eq!(uptime_human(Duration::from_secs(3_726)), "1h 2m 6s");
        assert_eq!(uptime_human(Duration::from_secs(90_061)), "1d 1h 1m 1s");
    }

    #[test]
    fn wasmcloud_http_server_images_are_aliases() {
        assert!(is_http_server(HTTP_SERVER_REF));
        assert!(is_http_server("ghcr.io/wasmcloud/http-server:0.23.0"));
        assert!(!is_http_server("ghcr.io/wasmcloud/keyvalue-redis:0.28.1"));
    }
}
