//! How hosts are doing, as a snapshot holds it for plugins: each host's health (judged by the
//! controller from its heartbeats), CPU and memory, and each component's traffic per host (as
//! the hosts measure it). Read through contract 0.2.0's `lattice-view`; placement's ranking
//! also reads health, to keep new work off suspect hosts.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::bindings::scaler::trellis::plugin::types;

/// A host's health as the controller judges it (see the controller's `health` module).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    #[default]
    Healthy,
    /// Missed heartbeats, or came back recently from unreachable: keeps what it runs, but new
    /// work goes elsewhere while any healthy host can take it.
    Suspect,
    /// Silent past the host timeout: forgotten, its work moved. Never in a snapshot.
    Unreachable,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Suspect => "suspect",
            Health::Unreachable => "unreachable",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host's health and resources. Resources are zero when the host does not report them
/// (wasmCloud hosts); `reported` tells.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HostVitals {
    pub health: Health,
    pub reported: bool,
    pub cpus: u32,
    /// Share of the machine's CPU time in use, 0–1.
    pub cpu_use: f64,
    /// Share of the machine's CPU time the host's own process used, 0–1.
    pub process_cpu_use: f64,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
}

/// A component's requests on one host over the host's recent window, as contract 0.2.0's
/// `component-traffic` answers it (kept in that form: the answer is a copy).
pub use types::Traffic;

/// The vitals of a snapshot's hosts and the traffic of its components.
#[derive(Debug, Clone, Default)]
pub struct Vitals {
    hosts: HashMap<String, HostVitals>,
    /// Component id → traffic on each host, ordered by host id.
    traffic: HashMap<String, Vec<Traffic>>,
    /// How many hosts are other than healthy, kept with each change so that placement knows
    /// in one look whether it has any to avoid.
    unhealthy: usize,
}

impl Vitals {
    pub fn set_host(&mut self, host_id: &str, vitals: HostVitals) {
        let healthy = |v: &HostVitals| v.health == Health::Healthy;
        if !healthy(&vitals) {
            self.unhealthy += 1;
        }
        if let Some(old) = self.hosts.insert(host_id.to_string(), vitals) {
            if !healthy(&old) {
                self.unhealthy -= 1;
            }
        }
    }

    /// Adds a component's traffic on a host (`traffic.host_id`).
    pub fn add_traffic(&mut self, component_id: &str, traffic: Traffic) {
        let list = self.traffic.entry(component_id.to_string()).or_default();
        let at = list.partition_point(|t| t.host_id < traffic.host_id);
        list.insert(at, traffic);
    }

    /// A host's vitals; a host the snapshot has none for counts as healthy with nothing
    /// reported.
    pub fn host(&self, host_id: &str) -> HostVitals {
        self.hosts.get(host_id).copied().unwrap_or_default()
    }

    pub fn health(&self, host_id: &str) -> Health {
        self.hosts
            .get(host_id)
            .map(|v| v.health)
            .unwrap_or_default()
    }

    /// Whether any host is other than healthy (placement skips its health check otherwise).
    pub fn any_unhealthy(&self) -> bool {
        self.unhealthy > 0
    }

    /// Every component's traffic on every host, by component id, then host id.
    pub fn all_traffic(&self) -> impl Iterator<Item = (&str, &Traffic)> {
        let mut ids: Vec<&String> = self.traffic.keys().collect();
        ids.sort();
        ids.into_iter()
            .flat_map(|id| self.traffic[id].iter().map(move |t| (id.as_str(), t)))
    }

    /// Where a component has traffic figures, ordered by host id.
    pub fn traffic(&self, component_id: &str) -> &[Traffic] {
        self.traffic
            .get(component_id)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// The answers of contract 0.2.0's `host-vitals` and `component-traffic`.
impl super::LatticeSnapshot {
    /// Each id's host's vitals, by position; none where the lattice has no such host.
    pub fn host_vitals(&self, ids: &[String]) -> Vec<Option<types::HostVitals>> {
        ids.iter()
            .map(|id| {
                self.contains_host(id).then(|| {
                    let v = self.vitals.host(id);
                    types::HostVitals {
                        host_id: id.clone(),
                        health: match v.health {
                            Health::Healthy => types::Health::Healthy,
                            // Unreachable hosts are not in a snapshot; were one, it would
                            // be no better than suspect.
                            Health::Suspect | Health::Unreachable => types::Health::Suspect,
                        },
                        reported: v.reported,
                        cpus: v.cpus,
                        cpu_use: v.cpu_use,
                        process_cpu_use: v.process_cpu_use,
                        memory_total_bytes: v.memory_total_bytes,
                        memory_available_bytes: v.memory_available_bytes,
                        instances: self.load_of(id),
                    }
                })
            })
            .collect()
    }

    /// A component's traffic on each host that reports it, ordered by host id.
    pub fn component_traffic(&self, component_id: &str) -> Vec<types::Traffic> {
        self.vitals.traffic(component_id).to_vec()
    }
}
