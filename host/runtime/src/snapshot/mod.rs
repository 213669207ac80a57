//! The lattice as a plugin sees it: an immutable snapshot the controller builds once per
//! reconcile pass and shares (behind an `Arc`) with every plugin call of that pass.
//!
//! Every query costs in proportion to what it answers, not to the lattice: hosts by label come
//! from an index ([`HostDirectory`]), instances are kept by component, and the instances per
//! host are kept up to date with every change rather than counted on each call.

mod document;
mod hosts;
mod packed;
mod vitals;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use document::{
    ComponentEntry, DocumentError, HostEntry, LatticeDocument, LinkEntry, ProviderEntry, Resources,
    TrafficEntry, DOCUMENT_FORMAT, MAX_DOCUMENT_BYTES,
};
/// A host with these labels, for unit tests.
#[cfg(test)]
pub(crate) use hosts::tests::host as test_host;
pub use hosts::HostDirectory;
pub use vitals::{Health, HostVitals, Traffic, Vitals};

use crate::bindings::{ComponentCount, ComponentInstance, HostInfo, Link, Pair, ProviderInstance};

/// A read-only picture of the lattice. Vectors are kept sorted by host id so that every query
/// answers in a stable order, which keeps plugin decisions reproducible.
#[derive(Debug, Default)]
pub struct LatticeSnapshot {
    hosts: Arc<HostDirectory>,
    /// Component id → instances, ordered by host id.
    components: BTreeMap<String, Vec<ComponentInstance>>,
    /// Provider id → instances, ordered by host id.
    providers: BTreeMap<String, Vec<ProviderInstance>>,
    /// Host id → instances of anything there (a component's count, one per provider): what
    /// `instance-counts` answers for everything, kept with each change to the two above.
    load: BTreeMap<String, u64>,
    /// Source id → links.
    pub links: BTreeMap<String, Vec<Link>>,
    pub configs: BTreeMap<String, Vec<Pair>>,
    /// Hosts' health and resources, components' traffic.
    pub vitals: Vitals,
    /// Logical time of the pass, in milliseconds.
    pub now_ms: u64,
    /// Where placement's next shortlist starts among the feasible hosts: each ranking moves it
    /// on ([`crate::placement`]), and the controller carries it from pass to pass.
    rotation: AtomicU64,
}

impl Clone for LatticeSnapshot {
    fn clone(&self) -> Self {
        Self {
            hosts: Arc::clone(&self.hosts),
            components: self.components.clone(),
            providers: self.providers.clone(),
            load: self.load.clone(),
            links: self.links.clone(),
            configs: self.configs.clone(),
            vitals: self.vitals.clone(),
            now_ms: self.now_ms,
            rotation: AtomicU64::new(self.rotation()),
        }
    }
}

/// What a plugin's `lattice-view` resource points at.
pub type LatticeHandle = Arc<LatticeSnapshot>;

impl LatticeSnapshot {
    /// A snapshot at logical time `now_ms` of `hosts`, with nothing running yet.
    pub fn new(hosts: Arc<HostDirectory>, now_ms: u64) -> Self {
        Self {
            hosts,
            now_ms,
            ..Self::default()
        }
    }

    /// A snapshot of `hosts` at time 0 (for tests and benchmarks).
    pub fn of_hosts(hosts: impl IntoIterator<Item = HostInfo>) -> Self {
        Self::new(Arc::new(HostDirectory::new(hosts)), 0)
    }

    pub fn directory(&self) -> &HostDirectory {
        &self.hosts
    }

    pub fn contains_host(&self, id: &str) -> bool {
        self.hosts.contains(id)
    }

    /// A host as plugins see it: its uptime is as of this snapshot's time.
    pub fn describe(&self, host: &HostInfo) -> HostInfo {
        let mut host = host.clone();
        let since = self.now_ms.saturating_sub(self.hosts.read_at_ms()) / 1000;
        host.uptime_seconds = host.uptime_seconds.saturating_add(since);
        host
    }

    pub fn host(&self, id: &str) -> Option<HostInfo> {
        self.hosts.get(id).map(|h| self.describe(h))
    }

    pub fn hosts(&self) -> Vec<HostInfo> {
        self.hosts.iter().map(|h| self.describe(h)).collect()
    }

    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// Hosts carrying every label of `requirements`, ordered by id.
    pub fn hosts_matching(&self, requirements: &[Pair]) -> Vec<HostInfo> {
        self.hosts
            .matching(requirements)
            .into_iter()
            .map(|at| self.describe(self.hosts.at(at)))
            .collect()
    }

    /// Sets how many instances of a component run on a host (0: none), as a
    /// `component_scaled` event would. A new instance gets `annotations()`; an existing one
    /// keeps its own.
    pub fn scale_component(
        &mut self,
        component_id: &str,
        host_id: &str,
        image: &str,
        count: u32,
        annotations: impl FnOnce() -> Vec<Pair>,
    ) {
        let instances = self.components.entry(component_id.to_string()).or_default();
        let before = match instances.binary_search_by(|i| i.host_id.as_str().cmp(host_id)) {
            Ok(at) if count == 0 => instances.remove(at).count,
            Ok(at) => {
                let instance = &mut instances[at];
                instance.image = image.to_string();
                std::mem::replace(&mut instance.count, count)
            }
            Err(_) if count == 0 => 0,
            Err(at) => {
                instances.insert(
                    at,
                    ComponentInstance {
                        host_id: host_id.to_string(),
                        component_id: component_id.to_string(),
                        image: image.to_string(),
                        count,
                        annotations: annotations(),
                    },
                );
                0
            }
        };
        if instances.is_empty() {
            self.components.remove(component_id);
        }
        self.add_load(host_id, u64::from(count), u64::from(before));
    }

    /// Adds (or replaces, on the same host) a component instance; a count of 0 removes it.
    pub fn put_component(&mut self, instance: ComponentInstance) {
        if instance.count == 0 {
            self.scale_component(&instance.component_id, &instance.host_id, "", 0, Vec::new);
            return;
        }
        let instances = self
            .components
            .entry(instance.component_id.clone())
            .or_default();
        let (host_id, count) = (instance.host_id.clone(), instance.count);
        let before = match instances.binary_search_by(|i| i.host_id.cmp(&host_id)) {
            Ok(at) => std::mem::replace(&mut instances[at], instance).count,
            Err(at) => {
                instances.insert(at, instance);
                0
            }
        };
        self.add_load(&host_id, u64::from(count), u64::from(before));
    }

    /// Adds a provider instance; one already on that host stays as it is.
    pub fn put_provider(&mut self, instance: ProviderInstance) {
        let instances = self
            .providers
            .entry(instance.provider_id.clone())
            .or_default();
        if let Err(at) = instances.binary_search_by(|i| i.host_id.cmp(&instance.host_id)) {
            let host_id = instance.host_id.clone();
            instances.insert(at, instance);
            self.add_load(&host_id, 1, 0);
        }
    }

    pub fn remove_provider(&mut self, provider_id: &str, host_id: &str) {
        let Some(instances) = self.providers.get_mut(provider_id) else {
            return;
        };
        if let Ok(at) = instances.binary_search_by(|i| i.host_id.as_str().cmp(host_id)) {
            instances.remove(at);
            if instances.is_empty() {
                self.providers.remove(provider_id);
            }
            self.add_load(host_id, 0, 1);
        }
    }

    fn add_load(&mut self, host_id: &str, added: u64, removed: u64) {
        if added == removed {
            return;
        }
        let load = self.load.entry(host_id.to_string()).or_insert(0);
        *load = (*load + added).saturating_sub(removed);
        if *load == 0 {
            self.load.remove(host_id);
        }
    }

    /// Every component's instances, by component id.
    pub fn components(&self) -> impl Iterator<Item = (&String, &[ComponentInstance])> {
        self.components
            .iter()
            .map(|(id, list)| (id, list.as_slice()))
    }

    /// Every provider's instances, by provider id.
    pub fn providers(&self) -> impl Iterator<Item = (&String, &[ProviderInstance])> {
        self.providers
            .iter()
            .map(|(id, list)| (id, list.as_slice()))
    }

    pub fn component_instances(&self, id: &str) -> Vec<ComponentInstance> {
        self.components.get(id).cloned().unwrap_or_default()
    }

    /// Where component `id` runs, without its id and annotations (see `component-counts`).
    pub fn component_counts(&self, id: &str) -> Vec<ComponentCount> {
        self.components
            .get(id)
            .into_iter()
            .flatten()
            .map(|i| ComponentCount {
                host_id: i.host_id.clone(),
                image: i.image.clone(),
                count: i.count,
            })
            .collect()
    }

    /// The hosts of `ids`, position by position; `None` where the lattice has no such host.
    pub fn hosts_by_id(&self, ids: &[String]) -> Vec<Option<HostInfo>> {
        ids.iter().map(|id| self.host(id)).collect()
    }

    pub fn provider_instances(&self, id: &str) -> Vec<ProviderInstance> {
        self.providers.get(id).cloned().unwrap_or_default()
    }

    pub fn links_from(&self, source: &str) -> Vec<Link> {
        self.links.get(source).cloned().unwrap_or_default()
    }

    /// Instances per host: of component or provider `id`, or of anything when `None`. Hosts
    /// that run none are left out. Either way this costs what it answers: the instances of
    /// `id`, or the hosts running anything (kept up to date, not counted here).
    pub fn instance_counts(&self, id: Option<&str>) -> BTreeMap<&str, u64> {
        let Some(id) = id else {
            return self.load.iter().map(|(h, &n)| (h.as_str(), n)).collect();
        };
        let mut counts = BTreeMap::new();
        let component_hosts = self
            .components
            .get(id)
            .into_iter()
            .flatten()
            .map(|i| (i.host_id.as_str(), u64::from(i.count)));
        let provider_hosts = self
            .providers
            .get(id)
            .into_iter()
            .flatten()
            .map(|i| (i.host_id.as_str(), 1));
        for (host, n) in component_hosts.chain(provider_hosts) {
            *counts.entry(host).or_insert(0) += n;
        }
        counts
    }

    /// Instances of anything on one host.
    pub fn load_of(&self, host_id: &str) -> u64 {
        self.load.get(host_id).copied().unwrap_or(0)
    }

    /// Where placement's next shortlist starts (see the field).
    pub fn rotation(&self) -> u64 {
        self.rotation.load(Ordering::Relaxed)
    }

    pub fn set_rotation(&mut self, rotation: u64) {
        *self.rotation.get_mut() = rotation;
    }

    /// Takes `by` places of the rotation; returns where they start.
    pub(crate) fn advance_rotation(&self, by: u64) -> u64 {
        self.rotation.fetch_add(by, Ordering::Relaxed)
    }
}

pub fn host_matches(host: &HostInfo, requirements: &[Pair]) -> bool {
    requirements.iter().all(|r| {
        host.labels
            .iter()
            .any(|l| l.key == r.key && l.value == r.value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn host(id: &str) -> HostInfo {
        HostInfo {
            id: id.into(),
            friendly_name: format!("node {id}"),
            labels: vec![Pair {
                key: "zone".into(),
                value: id.into(),
            }],
            uptime_seconds: 1,
        }
    }

    pub(super) fn instance(host: &str, image: &str, count: u32) -> ComponentInstance {
        ComponentInstance {
            host_id: host.into(),
            component_id: "app-web".into(),
            image: image.into(),
            count,
            annotations: vec![Pair {
                key: "wasmcloud.dev/appspec".into(),
                value: "app".into(),
            }],
        }
    }

    #[test]
    fn batched_queries_answer_position_by_position() {
        let mut snap = LatticeSnapshot::of_hosts(["a", "b"].map(host));
        snap.put_component(instance("b", "new", 1));
        snap.put_component(instance("a", "old", 2));

        let ids = ["b", "gone", "a"].map(String::from);
        let hosts = snap.hosts_by_id(&ids);
        assert_eq!(hosts.len(), 3);
        assert_eq!(hosts[0].as_ref().map(|h| h.id.as_str()), Some("b"));
        assert!(hosts[1].is_none());
        assert_eq!(
            hosts[2].as_ref().map(|h| h.labels[0].value.as_str()),
            Some("a")
        );
        assert!(snap.hosts_by_id(&[]).is_empty());

        let counts = snap.component_counts("app-web");
        let counts: Vec<(&str, &str, u32)> = counts
            .iter()
            .map(|c| (c.host_id.as_str(), c.image.as_str(), c.count))
            .collect();
        assert_eq!(counts, [("a", "old", 2), ("b", "new", 1)]);
        assert!(snap.component_counts("other").is_empty());
    }

    /// The instances per host kept with each change are what counting them all would give.
    #[test]
    fn instances_per_host_follow_every_change() {
        let mut snap = LatticeSnapshot::of_hosts(["a", "b"].map(host));
        let provider = |host: &str| ProviderInstance {
            host_id: host.into(),
            provider_id: "p".into(),
            image: "i".into(),
            annotations: vec![],
        };
        snap.put_component(instance("a", "x", 2));
        snap.put_provider(provider("a"));
        snap.put_provider(provider("a")); // already there: no change
        snap.put_component(instance("b", "x", 1));
        snap.scale_component("app-web", "a", "y", 5, Vec::new);
        let counted = |snap: &LatticeSnapshot| {
            let mut counts = BTreeMap::new();
            for (_, list) in snap.components() {
                for i in list {
                    *counts.entry(i.host_id.clone()).or_insert(0) += u64::from(i.count);
                }
            }
            for (_, list) in snap.providers() {
                for i in list {
                    *counts.entry(i.host_id.clone()).or_insert(0) += 1;
                }
            }
            counts
        };
        let kept = |snap: &LatticeSnapshot| -> BTreeMap<String, u64> {
            snap.instance_counts(None)
                .into_iter()
                .map(|(h, n)| (h.to_string(), n))
                .collect()
        };
        assert_eq!(kept(&snap), counted(&snap));
        assert_eq!(snap.load_of("a"), 6);
        snap.scale_component("app-web", "a", "y", 0, Vec::new);
        snap.remove_provider("p", "a");
        snap.remove_provider("p", "a");
        assert_eq!(kept(&snap), counted(&snap));
        assert_eq!(snap.load_of("a"), 0);
        assert_eq!(kept(&snap).len(), 1);
        // An existing instance keeps its annotations when scaled.
        snap.scale_component("app-web", "b", "z", 3, Vec::new);
        assert_eq!(snap.component_instances("app-web")[0].annotations.len(), 1);
    }

    #[test]
    fn uptimes_are_as_of_the_snapshot() {
        let directory = Arc::new(HostDirectory::new([host("a")]).read_at(2_000));
        let snap = LatticeSnapshot::new(directory, 7_500);
        assert_eq!(snap.host("a").unwrap().uptime_seconds, 1 + 5);
        assert_eq!(snap.hosts_matching(&[])[0].uptime_seconds, 6);
    }
}
