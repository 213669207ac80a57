//! Lattice events: CloudEvents 1.0 on `wasmbus.evt.{lattice}.{type}`, as wasmCloud hosts send them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ctl::{ComponentDescription, HostResources, ProviderDescription};

pub const TYPE_PREFIX: &str = "com.wasmcloud.lattice.";

pub const HOST_STARTED: &str = "host_started";
pub const HOST_STOPPED: &str = "host_stopped";
pub const HOST_HEARTBEAT: &str = "host_heartbeat";
pub const COMPONENT_SCALED: &str = "component_scaled";
pub const COMPONENT_SCALE_FAILED: &str = "component_scale_failed";
pub const PROVIDER_STARTED: &str = "provider_started";
pub const PROVIDER_STOPPED: &str = "provider_stopped";
pub const PROVIDER_START_FAILED: &str = "provider_start_failed";
pub const LINKDEF_SET: &str = "linkdef_set";
pub const LINKDEF_DELETED: &str = "linkdef_deleted";
pub const CONFIG_SET: &str = "config_set";
pub const CONFIG_DELETED: &str = "config_deleted";

/// Every kind [`CloudEvent::decode`] reads into an event of its own (others are
/// [`Event::Other`]).
pub const KINDS: [&str; 12] = [
    HOST_STARTED,
    HOST_STOPPED,
    HOST_HEARTBEAT,
    COMPONENT_SCALED,
    COMPONENT_SCALE_FAILED,
    PROVIDER_STARTED,
    PROVIDER_STOPPED,
    PROVIDER_START_FAILED,
    LINKDEF_SET,
    LINKDEF_DELETED,
    CONFIG_SET,
    CONFIG_DELETED,
];

/// The subject an event of `kind` (e.g. `component_scaled`) is published on.
pub fn subject(lattice: &str, kind: &str) -> String {
    format!("wasmbus.evt.{lattice}.{kind}")
}

/// The wildcard subject for every event of a lattice.
pub fn all_subjects(lattice: &str) -> String {
    format!("wasmbus.evt.{lattice}.>")
}

/// A CloudEvents 1.0 envelope in JSON format.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CloudEvent {
    pub specversion: String,
    pub id: String,
    /// `com.wasmcloud.lattice.{kind}`
    #[serde(rename = "type")]
    pub event_type: String,
    /// The id of the host that sent it.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl CloudEvent {
    pub fn new(kind: &str, source: &str, data: impl Serialize) -> Self {
        Self {
            specversion: "1.0".into(),
            id: uuid::Uuid::new_v4().to_string(),
            event_type: format!("{TYPE_PREFIX}{kind}"),
            source: source.into(),
            datacontenttype: Some("application/json".into()),
            time: Some(chrono::Utc::now().to_rfc3339()),
            data: serde_json::to_value(data).unwrap_or_default(),
        }
    }

    /// The short kind, e.g. `component_scaled`.
    pub fn kind(&self) -> &str {
        self.event_type
            .strip_prefix(TYPE_PREFIX)
            .unwrap_or(&self.event_type)
    }

    /// Decodes the data as the event's typed payload.
    pub fn decode(&self) -> Result<Event, serde_json::Error> {
        let data = self.data.clone();
        Ok(match self.kind() {
            HOST_STARTED => Event::HostStarted(serde_json::from_value(data)?),
            HOST_STOPPED => Event::HostStopped(serde_json::from_value(data)?),
            HOST_HEARTBEAT => Event::HostHeartbeat(serde_json::from_value(data)?),
            COMPONENT_SCALED => Event::ComponentScaled(serde_json::from_value(data)?),
            COMPONENT_SCALE_FAILED => Event::ComponentScaleFailed(serde_json::from_value(data)?),
            PROVIDER_STARTED => Event::ProviderStarted(serde_json::from_value(data)?),
            PROVIDER_STOPPED => Event::ProviderStopped(serde_json::from_value(data)?),
            PROVIDER_START_FAILED => Event::ProviderStartFailed(serde_json::from_value(data)?),
            LINKDEF_SET => Event::LinkdefSet(serde_json::from_value(data)?),
            LINKDEF_DELETED => Event::LinkdefDeleted(serde_json::from_value(data)?),
            CONFIG_SET => Event::ConfigSet(serde_json::from_value(data)?),
            CONFIG_DELETED => Event::ConfigDeleted(serde_json::from_value(data)?),
            _ => Event::Other,
        })
    }
}

/// The typed payload of the events trellis acts on.
#[derive(Debug, Clone)]
pub enum Event {
    HostStarted(HostStarted),
    HostStopped(HostStopped),
    HostHeartbeat(HostHeartbeat),
    ComponentScaled(ComponentScaled),
    ComponentScaleFailed(ComponentScaleFailed),
    ProviderStarted(ProviderStarted),
    ProviderStopped(ProviderStopped),
    ProviderStartFailed(ProviderStartFailed),
    LinkdefSet(crate::ctl::Link),
    LinkdefDeleted(LinkdefDeleted),
    ConfigSet(ConfigEvent),
    ConfigDeleted(ConfigEvent),
    Other,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostStarted {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub friendly_name: String,
    #[serde(default)]
    pub uptime_seconds: u64,
    #[serde(default)]
    pub version: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostStopped {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostHeartbeat {
    #[serde(default)]
    pub components: Vec<ComponentDescription>,
    #[serde(default)]
    pub providers: Vec<ProviderDescription>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub friendly_name: String,
    #[serde(default)]
    pub uptime_seconds: u64,
    #[serde(default)]
    pub uptime_human: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub issuer: String,
    /// CPU and memory (trellis nodes where the system says; wasmCloud's tools ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<HostResources>,
    /// Requests the host's HTTP server holds for components that run on no node yet, by
    /// component id: demand for an app scaled to zero (trellis nodes; ignored elsewhere).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub waiting: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ComponentScaled {
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub host_id: String,
    #[serde(default)]
    pub image_ref: String,
    #[serde(default)]
    pub max_instances: u32,
    #[serde(default)]
    pub component_id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ComponentScaleFailed {
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub host_id: String,
    #[serde(default)]
    pub image_ref: String,
    #[serde(default)]
    pub max_instances: u32,
    #[serde(default)]
    pub component_id: String,
    #[serde(default)]
    pub error: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProviderStarted {
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub host_id: String,
    #[serde(default)]
    pub image_ref: String,
    #[serde(default)]
    pub provider_id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProviderStopped {
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub host_id: String,
    #[serde(default)]
    pub provider_id: String,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProviderStartFailed {
    #[serde(default)]
    pub host_id: String,
    #[serde(default)]
    pub provider_ref: String,
    #[serde(default)]
    pub provider_id: String,
    #[serde(default)]
    pub error: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LinkdefDeleted {
    pub source_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub wit_namespace: String,
    #[serde(default)]
    pub wit_package: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigEvent {
    pub config_name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_envelope() {
        let ev = CloudEvent::new(
            COMPONENT_SCALED,
            "NHOST",
            ComponentScaled {
                host_id: "NHOST".into(),
                component_id: "echo".into(),
                max_instances: 2,
                ..Default::default()
            },
        );
        let json = serde_json::to_string(&ev).unwrap();
        let back: CloudEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back.kind(), COMPONENT_SCALED);
        match back.decode().unwrap() {
            Event::ComponentScaled(s) => assert_eq!(s.max_instances, 2),
            other => panic!("unexpected {other:?}"),
        }
    }
}
