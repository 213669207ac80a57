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

use crate::component::{ComponentRuntime, Components, RunningComponent};
use crate::http_server::{HttpServer, ListenerChange, Route};
use crate::store::LatticeStores;
use crate::NodeConfig;

/// The image reference of the built-in HTTP server provider.
pub(crate) const HTTP_SERVER_REF: &str = "builtin:http-server";
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

/// A capability provider running on this node (only the built-in HTTP server, for now).
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
    /// Wakes the heartbeat task so the controller learns about a change at once.
    changed: Notify,
    /// Scale commands per component, so that the last one to arrive wins.
    scale_queues: Mutex<HashMap<String, ScaleQueue>>,
    /// Serialises HTTP route reconciliation.
    routes_lock: tokio::sync::Mutex<()>,
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
        Ok(Self {
            lattice: config.lattice.clone(),
            friendly_name,
            nats_url: config.nats_url.clone(),
            started: Instant::now(),
            client,
            subjects: Subjects::new(&config.lattice),
            stores,
            labels: RwLock::new(labels),
            http: HttpServer::new(id.clone(), components.clone()),
            components,
            providers: RwLock::default(),
            links: RwLock::default(),
            runtime: ComponentRuntime::new()?,
            changed: Notify::new(),
            scale_queues: Mutex::default(),
            routes_lock: tokio::sync::Mutex::new(()),
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
                name: Some("http-server".into()),
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
    }

    /// Removes a label; false if it was not set.
    pub(crate) async fn delete_label(&self, key: &str) -> bool {
        let removed = write(&self.labels).remove(key).is_some();
        if removed {
            self.publish_labels_changed().await;
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
        let _serialised = ticket.lock.lock().await;
        if !self.is_latest(&cmd.component_id, &ticket) {
            debug!(host_id = %self.id, component_id = %cmd.component_id, "scale command superseded by a newer one");
            return;
        }
        let span = tracing::info_span!(
            "scale",
            host_id = %self.id,
            component_id = %cmd.component_id,
            count = cmd.max_instances
        );
        match self.apply_scale(&cmd).instrument(span.clone()).await {
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
    async fn apply_scale(&self, cmd: &ScaleComponentCommand) -> Result<String, String> {
        if cmd.max_instances == 0 {
            let stopped = self.components.remove(&cmd.component_id);
            return Ok(stopped.map_or_else(|| cmd.component_ref.clone(), |c| c.image_ref.clone()));
        }
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
                let loaded = self.runtime.load(&cmd.component_ref).await.map_err(|e| {
                    format!(
                        "cannot start {} from {}: {e}",
                        cmd.component_id, cmd.component_ref
                    )
                })?;
                (cmd.component_ref.clone(), loaded)
            }
        };
        // A new count gets a new semaphore: requests in flight finish under the old one.
        self.components.insert(Arc::new(RunningComponent::new(
            cmd.component_id.clone(),
            image_ref.clone(),
            cmd.annotations.clone().unwrap_or_default(),
            cmd.max_instances,
            loaded,
        )));
        Ok(image_ref)
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
    /// `provider_start_failed`).
    pub(crate) async fn start_provider(&self, cmd: StartProviderCommand) -> Result<(), String> {
        if !is_http_server(&cmd.provider_ref) {
            let error = format!(
                "unknown provider image {:?}: this node runs only the built-in HTTP server ({HTTP_SERVER_REF}, or any image ref containing wasmcloud/http-server)",
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
        self.reconcile_routes().await;
        Ok(())
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
    }

    /// Opens, moves and closes HTTP listeners so that each HTTP link of a provider running here
    /// has one.
    pub(crate) async fn reconcile_routes(&self) {
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
                    return;
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
        for change in self.http.apply(routes).await {
            match change {
                ListenerChange::Failed { route, error } => {
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
    }
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
