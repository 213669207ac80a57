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

    /// Instances per host: of component or provider `id`, or of anything when `None`.
    /// Placement ranks every candidate host by these, so they are counted in one pass rather
    /// than rescanned per host.
    pub fn instance_counts(&self, id: Option<&str>) -> BTreeMap<&str, u64> {
        let (components, providers): (Vec<&Vec<ComponentInstance>>, Vec<&Vec<ProviderInstance>>) =
            match id {
                Some(id) => (
                    self.components.get(id).into_iter().collect(),
                    self.providers.get(id).into_iter().collect(),
                ),
                None => (
                    self.components.values().collect(),
                    self.providers.values().collect(),
                ),
            };
        let mut counts = BTreeMap::new();
        let component_hosts = components
            .into_iter()
            .flatten()
            .map(|i| (i.host_id.as_str(), u64::from(i.count)));
        let provider_hosts = providers
            .into_iter()
            .flatten()
            .map(|i| (i.host_id.as_str(), 1));
        for (host, n) in component_hosts.chain(provider_hosts) {
            *counts.entry(host).or_insert(0) += n;
        }
        counts
    }
}

pub fn host_matches(host: &HostInfo, requirements: &[Pair]) -> bool {
    requirements.iter().all(|r| {
        host.labels
            .iter()
            .any(|l| l.key == r.key && l.value == r.value)
    })
}
