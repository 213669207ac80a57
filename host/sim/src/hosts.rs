//! The simulated hosts of one lattice and what they do with control requests.
//!
//! The control interface itself (subjects, checks, replies, links and configs) is the one trellis
//! nodes serve ([`trellis_bus::control`]); here is only what a host does once a request was
//! accepted: a component "runs" as soon as it is scaled (or updated), a provider as soon as it
//! is started, with the events a node would publish; a host bids in an auction as a node does.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde::Serialize;
use trellis_bus::control::{self, Auction, LatticeHosts, Offered, Operation};
use trellis_bus::lattice_data::LatticeData;
use trellis_lattice::ctl::{
    self, ComponentDescription, HostInventory, ProviderDescription, ScaleComponentCommand,
    StartProviderCommand, UpdateComponentCommand,
};
use trellis_lattice::event;

/// The version simulated hosts report.
pub(crate) const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "-sim");

#[derive(Debug, Clone, PartialEq)]
struct Instance {
    image: String,
    count: u32,
    annotations: BTreeMap<String, String>,
}

/// One simulated host.
pub(crate) struct Host {
    friendly_name: String,
    pub(crate) labels: BTreeMap<String, String>,
    started: Instant,
    components: BTreeMap<String, Instance>,
    providers: BTreeMap<String, Instance>,
}

impl Host {
    pub(crate) fn new(friendly_name: String, labels: BTreeMap<String, String>) -> Self {
        Self {
            friendly_name,
            labels,
            started: Instant::now(),
            components: BTreeMap::new(),
            providers: BTreeMap::new(),
        }
    }

    pub(crate) fn started(&self) -> event::HostStarted {
        event::HostStarted {
            labels: self.labels.clone(),
            friendly_name: self.friendly_name.clone(),
            uptime_seconds: 0,
            version: VERSION.into(),
        }
    }

    pub(crate) fn heartbeat(&self) -> event::HostHeartbeat {
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
            // Simulated hosts run nothing, so they have no load to report.
            resources: None,
            waiting: Default::default(),
        }
    }

    /// How many instances of `component_id` run here, if any.
    pub(crate) fn instances_of(&self, component_id: &str) -> Option<u32> {
        self.components.get(component_id).map(|c| c.count)
    }

    /// Whether provider `provider_id` runs here.
    pub(crate) fn runs_provider(&self, provider_id: &str) -> bool {
        self.providers.contains_key(provider_id)
    }

    /// Instances of each component running here.
    pub(crate) fn instances(&self) -> impl Iterator<Item = (&String, u32)> {
        self.components.iter().map(|(id, c)| (id, c.count))
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
                traffic: None,
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
    /// Control requests that changed something: everything but ping, inventory and reads of
    /// links and configs.
    pub commands: AtomicU64,
    pub component_scales: AtomicU64,
    pub provider_starts: AtomicU64,
    pub provider_stops: AtomicU64,
}

/// The simulated hosts of one lattice, behind one NATS connection.
pub(crate) struct Lattice {
    pub(crate) client: async_nats::Client,
    pub(crate) lattice: String,
    pub(crate) hosts: Mutex<HashMap<String, Host>>,
    pub(crate) data: LatticeData,
    pub(crate) counters: Counters,
    /// [`crate::SimConfig::misreport_provider_images`].
    pub(crate) misreport_provider_images: bool,
}

impl Lattice {
    pub(crate) async fn publish(&self, host_id: &str, kind: &str, data: impl Serialize) {
        control::publish_event(&self.client, &self.lattice, host_id, kind, data).await;
    }

    /// Publishes `host_started` and a first heartbeat for the host.
    pub(crate) async fn announce(&self, id: &str) {
        let (started, heartbeat) = {
            let hosts = lock(&self.hosts);
            let Some(host) = hosts.get(id) else { return };
            (host.started(), host.heartbeat())
        };
        self.publish(id, event::HOST_STARTED, started).await;
        self.publish(id, event::HOST_HEARTBEAT, heartbeat).await;
    }

    /// Changes a label (`None` removes it); returns the host's labels if they changed.
    fn relabel(
        &self,
        host_id: &str,
        key: String,
        value: Option<String>,
    ) -> Option<BTreeMap<String, String>> {
        let mut hosts = lock(&self.hosts);
        let host = hosts.get_mut(host_id)?;
        let changed = match value {
            Some(value) => {
                host.labels.insert(key, value);
                true
            }
            None => host.labels.remove(&key).is_some(),
        };
        changed.then(|| host.labels.clone())
    }

    async fn publish_labels(&self, host_id: &str, labels: BTreeMap<String, String>) {
        let data = serde_json::json!({ "host_id": host_id, "labels": labels });
        self.publish(host_id, "labels_changed", data).await;
    }
}

impl LatticeHosts for Lattice {
    fn serves(&self, host_id: &str) -> bool {
        lock(&self.hosts).contains_key(host_id)
    }

    fn lattice_data(&self) -> &LatticeData {
        &self.data
    }

    fn event_source(&self) -> String {
        lock(&self.hosts).keys().next().cloned().unwrap_or_default()
    }

    fn received(&self, operation: &Operation<'_>) {
        use Operation::*;
        let counters = &self.counters;
        let also = match operation {
            ComponentScale(_) => Some(&counters.component_scales),
            ProviderStart(_) => Some(&counters.provider_starts),
            ProviderStop(_) => Some(&counters.provider_stops),
            HostStop(_) | ComponentUpdate(_) | LabelPut(_) | LabelDel(_) | LinkPut | LinkDel
            | ConfigPut(_) | ConfigDel(_) => None,
            HostPing | HostGet(_) | LinkGet | ConfigGet(_) | ClaimsGet | ComponentAuction
            | ProviderAuction | Unknown(_) => return,
        };
        counters.commands.fetch_add(1, Ordering::Relaxed);
        if let Some(counter) = also {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn ping(&self) -> Vec<ctl::Host> {
        lock(&self.hosts)
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
            .collect()
    }

    fn inventory(&self, host_id: &str) -> Option<HostInventory> {
        lock(&self.hosts).get(host_id).map(|h| {
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
        })
    }

    async fn stop_host(&self, host_id: &str) {
        let labels = lock(&self.hosts).remove(host_id).map(|h| h.labels);
        if let Some(labels) = labels {
            self.publish(host_id, event::HOST_STOPPED, event::HostStopped { labels })
                .await;
        }
    }

    fn component_image(&self, host_id: &str, component_id: &str) -> Option<String> {
        lock(&self.hosts)
            .get(host_id)?
            .components
            .get(component_id)
            .map(|c| c.image.clone())
    }

    fn bidders(&self, auction: &Auction<'_>) -> Vec<String> {
        lock(&self.hosts)
            .iter()
            .filter(|(_, host)| {
                let already_runs = match auction.offered {
                    Offered::Component => host.components.contains_key(auction.id),
                    Offered::Provider => host.providers.contains_key(auction.id),
                };
                auction.bids(&host.labels, already_runs)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    async fn scale_component(self: &Arc<Self>, host_id: &str, cmd: ScaleComponentCommand) {
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

    async fn update_component(self: &Arc<Self>, host_id: &str, cmd: UpdateComponentCommand) {
        let updated = {
            let mut hosts = lock(&self.hosts);
            let component = hosts
                .get_mut(host_id)
                .and_then(|h| h.components.get_mut(&cmd.component_id));
            // Stopped since the request was checked: nothing to update.
            let Some(component) = component else { return };
            component.image = cmd.new_component_ref.clone();
            // As a node does: the command's annotations if it has some, else the current ones.
            if let Some(annotations) = &cmd.annotations {
                component.annotations = annotations.clone();
            }
            component.clone()
        };
        let data = event::ComponentScaled {
            annotations: updated.annotations,
            host_id: host_id.into(),
            image_ref: updated.image,
            max_instances: updated.count,
            component_id: cmd.component_id,
        };
        self.publish(host_id, event::COMPONENT_SCALED, data).await;
    }

    async fn start_provider(
        &self,
        host_id: &str,
        cmd: StartProviderCommand,
    ) -> Result<Vec<String>, String> {
        let annotations = cmd.annotations.clone().unwrap_or_default();
        let image = if self.misreport_provider_images {
            format!("{}-as-reported", cmd.provider_ref)
        } else {
            cmd.provider_ref.clone()
        };
        {
            let mut hosts = lock(&self.hosts);
            let Some(host) = hosts.get_mut(host_id) else {
                return Err(format!("host {host_id} stopped"));
            };
            host.providers.insert(
                cmd.provider_id.clone(),
                Instance {
                    image: image.clone(),
                    count: 1,
                    annotations: annotations.clone(),
                },
            );
        }
        let data = event::ProviderStarted {
            annotations,
            host_id: host_id.into(),
            image_ref: image,
            provider_id: cmd.provider_id,
        };
        self.publish(host_id, event::PROVIDER_STARTED, data).await;
        Ok(Vec::new())
    }

    async fn stop_provider(&self, host_id: &str, provider_id: &str) -> bool {
        let removed = lock(&self.hosts)
            .get_mut(host_id)
            .and_then(|h| h.providers.remove(provider_id));
        let Some(provider) = removed else {
            return false;
        };
        let data = event::ProviderStopped {
            annotations: provider.annotations,
            host_id: host_id.into(),
            provider_id: provider_id.into(),
            reason: "stop requested".into(),
        };
        self.publish(host_id, event::PROVIDER_STOPPED, data).await;
        true
    }

    async fn put_label(&self, host_id: &str, key: String, value: String) {
        if let Some(labels) = self.relabel(host_id, key, Some(value)) {
            self.publish_labels(host_id, labels).await;
        }
    }

    async fn delete_label(&self, host_id: &str, key: &str) -> bool {
        match self.relabel(host_id, key.to_string(), None) {
            Some(labels) => {
                self.publish_labels(host_id, labels).await;
                true
            }
            None => false,
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
