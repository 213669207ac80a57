//! What a host tells the lattice: CloudEvents, heartbeats, the answers to `host.ping` and
//! `host.get`, and its labels (a change is an event of its own).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tracing::debug;
use trellis_lattice::ctl::{
    self, uptime_human, ComponentDescription, HostInventory, ProviderDescription,
};
use trellis_lattice::event;

use super::providers::is_keyvalue;
use super::{read, write, Host};

/// Event published when labels change (as wasmCloud hosts do).
const LABELS_CHANGED: &str = "labels_changed";

impl Host {
    pub(super) async fn publish_event(&self, kind: &str, data: impl Serialize) {
        trellis_bus::control::publish_event(&self.client, &self.lattice, &self.id, kind, data)
            .await;
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

    async fn publish_heartbeat(&self) {
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
            resources: Some(self.resources.sample()),
            waiting: self.http.waiting.counts(),
        };
        self.publish_event(event::HOST_HEARTBEAT, data).await;
    }

    /// The answer to `host.ping`.
    pub(super) fn ping(&self) -> ctl::Host {
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
            resources: Some(self.resources.latest()),
        }
    }

    /// The answer to `host.get`.
    pub(super) fn inventory(&self) -> HostInventory {
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
                traffic: c.traffic.summary(),
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

    pub(super) async fn put_label(&self, key: String, value: String) {
        write(&self.labels).insert(key, value);
        self.publish_labels_changed().await;
        self.refresh_envs().await;
    }

    /// Removes a label; false if it was not set.
    pub(super) async fn delete_label(&self, key: &str) -> bool {
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
}

/// Publishes a heartbeat every `interval`, and right after every change.
pub(crate) async fn heartbeats(host: Arc<Host>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let tick = tokio::select! {
            _ = ticks.tick() => true,
            () = host.changed.notified() => false,
            // A request started waiting for a component that runs nowhere: tell at once.
            () = host.http.waiting.started.notified() => false,
        };
        host.publish_heartbeat().await;
        debug!(host_id = %host.id, "heartbeat");
        // A listener whose address was taken gets another chance on every tick.
        if tick && host.http.has_failures().await {
            host.reconcile_routes().await;
        }
    }
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
