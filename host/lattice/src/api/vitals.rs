//! `trellis.api.{lattice}.hosts.get` (an extension): every host the controller knows, with its
//! health as the controller judges it, its resources as it last reported them, and, when asked,
//! a short history of its load and of each component's instances and traffic. What
//! `trellis get hosts`, the HTTP API and the dashboard show.

use serde::{Deserialize, Serialize};

use crate::ctl::{ComponentTraffic, HostResources};

/// A host's health as a controller judges it from its heartbeats, with hysteresis: a host
/// missing a few heartbeats is suspect (keeps its work, gets no new work while a healthy host
/// can take it); silent past the host timeout, unreachable (its work moves).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostHealth {
    #[default]
    Healthy,
    Suspect,
    Unreachable,
}

impl std::fmt::Display for HostHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HostHealth::Healthy => "healthy",
            HostHealth::Suspect => "suspect",
            HostHealth::Unreachable => "unreachable",
        })
    }
}

/// The request of `hosts.get`; an empty body asks for no history.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostsRequest {
    /// Include each host's and component's recent samples.
    #[serde(default)]
    pub history: bool,
}

/// The answer of `snapshot.get`: the lattice as the controller's plugins would see it now,
/// as the document `trellis plugin run --lattice` reads (the runtime's `LatticeDocument`; kept
/// as JSON here, since this crate knows nothing of plugins).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SnapshotResponse {
    /// Why there is no snapshot.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<serde_json::Value>,
}

/// The answer of `hosts.get`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostsResponse {
    /// Something to know about the answer (history left out to keep it within a message).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Ordered by host id. Hosts recently unreachable are listed too, until forgotten.
    pub hosts: Vec<HostReport>,
    /// Components with history, ordered by id (only when history was asked for).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentReport>,
    /// Seconds between two samples of a history.
    #[serde(default)]
    pub sample_seconds: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostReport {
    pub host_id: String,
    #[serde(default)]
    pub friendly_name: String,
    pub health: HostHealth,
    /// Seconds the host has had this health.
    #[serde(default)]
    pub health_seconds: u64,
    /// Milliseconds since the controller last heard from the host.
    #[serde(default)]
    pub last_seen_ms: u64,
    /// Instances of components and providers running there.
    #[serde(default)]
    pub instances: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<HostResources>,
    /// Oldest first, one per `sample_seconds`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HostSample>,
}

/// A host's load at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct HostSample {
    /// Seconds before the answer was made.
    pub ago_seconds: u32,
    pub cpu_use: f64,
    #[serde(default)]
    pub process_cpu_use: f64,
    pub memory_available_bytes: u64,
    pub instances: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ComponentReport {
    pub component_id: String,
    /// Oldest first.
    pub history: Vec<ComponentSample>,
}

/// A component across the lattice at one moment: its instances, and its traffic summed over
/// hosts (p99 as the worst host's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentSample {
    pub ago_seconds: u32,
    pub instances: u64,
    pub hosts: u32,
    pub traffic: ComponentTraffic,
}
