//! The lattice as a plugin sees it: an immutable snapshot the controller builds once per
//! reconcile pass and shares (behind an `Arc`) with every plugin call of that pass.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::bindings::{ComponentInstance, HostInfo, Link, Pair, ProviderInstance};

/// A read-only picture of the lattice. Vectors are kept sorted by host id so that every query
/// answers in a stable order, which keeps plugin decisions reproducible.
#[derive(Debug, Clone, Default)]
pub struct LatticeSnapshot {
    pub hosts: BTreeMap<String, HostInfo>,
    /// Component id → instances, ordered by host id.
    pub components: BTreeMap<String, Vec<ComponentInstance>>,
    /// Provider id → instances, ordered by host id.
    pub providers: BTreeMap<String, Vec<ProviderInstance>>,
    /// Source id → links.
    pub links: BTreeMap<String, Vec<Link>>,
    pub configs: BTreeMap<String, Vec<Pair>>,
    /// Logical time of the pass, in milliseconds.
    pub now_ms: u64,
}

/// What a plugin's `lattice-view` resource points at.
pub type LatticeHandle = Arc<LatticeSnapshot>;

impl LatticeSnapshot {
    pub fn hosts_matching(&self, requirements: &[Pair]) -> Vec<HostInfo> {
        self.hosts
            .values()
            .filter(|h| host_matches(h, requirements))
            .cloned()
            .collect()
    }

    pub fn component_instances(&self, id: &str) -> Vec<ComponentInstance> {
        self.components.get(id).cloned().unwrap_or_default()
    }

    pub fn provider_instances(&self, id: &str) -> Vec<ProviderInstance> {
        self.providers.get(id).cloned().unwrap_or_default()
    }

    pub fn links_from(&self, source: &str) -> Vec<Link> {
        self.links.get(source).cloned().unwrap_or_default()
    }

    /// How many instances of `id` (component or provider) a host runs.
    pub fn instances_on(&self, id: &str, host: &str) -> u64 {
        let components = self
            .components
            .get(id)
            .into_iter()
            .flatten()
            .filter(|i| i.host_id == host)
            .map(|i| u64::from(i.count))
            .sum::<u64>();
        let providers = self
            .providers
            .get(id)
            .into_iter()
            .flatten()
            .filter(|i| i.host_id == host)
            .count() as u64;
        components + providers
    }

    /// How many instances of anything a host runs.
    pub fn load_of(&self, host: &str) -> u64 {
        let components = self
            .components
            .values()
            .flatten()
            .filter(|i| i.host_id == host)
            .map(|i| u64::from(i.count))
            .sum::<u64>();
        let providers = self
            .providers
            .values()
            .flatten()
            .filter(|i| i.host_id == host)
            .count() as u64;
        components + providers
    }
}

pub fn host_matches(host: &HostInfo, requirements: &[Pair]) -> bool {
    requirements.iter().all(|r| {
        host.labels
            .iter()
            .any(|l| l.key == r.key && l.value == r.value)
    })
}
