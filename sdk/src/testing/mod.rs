//! A lattice snapshot to test plugin logic natively: build one with [`TestLattice`], call the
//! scaler's `reconcile` with it, and [`TestLattice::apply`] the commands to check convergence.
//! Load, traffic and health are staged with `with_vitals`, `with_health` and `with_traffic`
//! (`staged.rs`). A rollout plugin is driven through a staged rollout by [`RolloutRun`].

mod rollout;
mod staged;

pub use rollout::{properties, scaled, RolloutRun};

use std::collections::BTreeMap;

use crate::labels;
use crate::lattice::Lattice;
use crate::types::{
    Command, ComponentInstance, Host, Labels, Link, PlacementRequest, ProviderInstance,
};
use crate::vitals::{Health, HostVitals, Traffic};

/// An in-memory lattice. Its `rank_hosts` is the controller's default placement: hosts carrying
/// the requested labels (healthy ones while any qualifies), fewest instances of the same
/// component or provider first, then fewest instances overall, then by host id.
///
/// It belongs to one application (`app` unless [`TestLattice::for_app`] says otherwise):
/// instances added with `with_component`/`with_provider` or started by [`TestLattice::apply`]
/// carry that app's annotation, as the controller's would.
#[derive(Debug, Clone, PartialEq)]
pub struct TestLattice {
    app: String,
    hosts: BTreeMap<String, Host>,
    components: Vec<ComponentInstance>,
    providers: Vec<ProviderInstance>,
    links: Vec<Link>,
    configs: BTreeMap<String, Labels>,
    now_ms: u64,
    /// Ranks at most this many hosts per call, as the controller does on a large lattice.
    shortlist: Option<usize>,
    /// Where the next shortlist starts among the qualifying hosts.
    rotation: std::cell::Cell<usize>,
    /// Staged health and resources by host id (`staged.rs`).
    vitals: BTreeMap<String, HostVitals>,
    /// Staged traffic by component id, each host's in id order.
    traffic: BTreeMap<String, Vec<Traffic>>,
}

impl Default for TestLattice {
    fn default() -> Self {
        Self {
            app: "app".into(),
            hosts: BTreeMap::new(),
            components: Vec::new(),
            providers: Vec::new(),
            links: Vec::new(),
            configs: BTreeMap::new(),
            now_ms: 0,
            shortlist: None,
            rotation: std::cell::Cell::new(0),
            vitals: BTreeMap::new(),
            traffic: BTreeMap::new(),
        }
    }
}

impl TestLattice {
    /// An empty lattice (no hosts, logical time 0) belonging to application `app`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The application whose instances this lattice runs (see the type's docs).
    pub fn for_app(mut self, app: &str) -> Self {
        self.app = app.into();
        self
    }

    fn annotations(&self) -> Labels {
        crate::types::label_map(&[(crate::diff::APP_ANNOTATION, self.app.as_str())])
    }

    /// Adds a provider instance started by another application `app` (or, with `""`, by hand).
    pub fn with_foreign_provider(mut self, host_id: &str, provider_id: &str, app: &str) -> Self {
        let annotations = if app.is_empty() {
            Labels::new()
        } else {
            crate::types::label_map(&[(crate::diff::APP_ANNOTATION, app)])
        };
        self.providers.push(ProviderInstance {
            host_id: host_id.into(),
            provider_id: provider_id.into(),
            annotations,
            ..Default::default()
        });
        self
    }

    /// Adds (or replaces) a host with these labels.
    pub fn with_host(self, id: &str, labels: &[(&str, &str)]) -> Self {
        self.with_host_info(Host {
            id: id.into(),
            friendly_name: id.into(),
            labels: crate::types::label_map(labels),
            uptime_seconds: 0,
        })
    }

    /// Adds (or replaces, by id) a host given in full: friendly name, labels and uptime.
    pub fn with_host_info(mut self, host: Host) -> Self {
        self.hosts.insert(host.id.clone(), host);
        self
    }

    /// Adds `count` instances of a component on a host (image left empty).
    pub fn with_component(self, host_id: &str, component_id: &str, count: u32) -> Self {
        let annotations = self.annotations();
        self.with_component_instance(ComponentInstance {
            host_id: host_id.into(),
            component_id: component_id.into(),
            count,
            annotations,
            ..Default::default()
        })
    }

    /// Adds a component instance exactly as given, image and annotations included: for an
    /// outdated image, or an instance another app started.
    pub fn with_component_instance(mut self, instance: ComponentInstance) -> Self {
        self.components.push(instance);
        self
    }

    /// Adds a provider instance on a host (image left empty).
    pub fn with_provider(self, host_id: &str, provider_id: &str) -> Self {
        let annotations = self.annotations();
        self.with_provider_instance(ProviderInstance {
            host_id: host_id.into(),
            provider_id: provider_id.into(),
            annotations,
            ..Default::default()
        })
    }

    /// Adds a provider instance exactly as given, image and annotations included: for an
    /// outdated image, or a provider another app started.
    pub fn with_provider_instance(mut self, instance: ProviderInstance) -> Self {
        self.providers.push(instance);
        self
    }

    /// Adds (or replaces, by source, namespace, package and name) a link.
    pub fn with_link(mut self, link: Link) -> Self {
        self.put_link(link);
        self
    }

    /// Adds (or replaces) a named config with these entries.
    pub fn with_config(mut self, name: &str, entries: &[(&str, &str)]) -> Self {
        self.configs
            .insert(name.into(), crate::types::label_map(entries));
        self
    }

    /// Ranks at most `size` hosts per `rank_hosts` call, the next ones on each call, as the
    /// controller does on a lattice of more hosts than its shortlist: for testing that a
    /// scaler finds enough hosts ([`Lattice::rank_at_least`]). Without it, every qualifying
    /// host is ranked.
    pub fn with_shortlist(mut self, size: usize) -> Self {
        self.shortlist = Some(size.max(1));
        self
    }

    /// Sets the logical time.
    pub fn with_now(mut self, ms: u64) -> Self {
        self.now_ms = ms;
        self
    }

    /// Removes a host and everything that ran on it, as when a host is lost.
    pub fn without_host(mut self, id: &str) -> Self {
        self.hosts.remove(id);
        self.components.retain(|i| i.host_id != id);
        self.providers.retain(|i| i.host_id != id);
        self
    }

    /// Replaces a host's labels.
    pub fn with_labels(mut self, id: &str, labels: &[(&str, &str)]) -> Self {
        if let Some(host) = self.hosts.get_mut(id) {
            host.labels = crate::types::label_map(labels);
        }
        self
    }

    /// Carries out commands as a lattice would, so that a test can reconcile again and check
    /// that the scaler converges.
    pub fn apply(&mut self, commands: &[Command]) {
        for command in commands {
            match command {
                Command::ScaleComponent {
                    host_id,
                    component_id,
                    image,
                    count,
                    ..
                } => {
                    self.components
                        .retain(|i| !(i.host_id == *host_id && i.component_id == *component_id));
                    if *count > 0 {
                        self.components.push(ComponentInstance {
                            host_id: host_id.clone(),
                            component_id: component_id.clone(),
                            image: image.clone(),
                            count: *count,
                            annotations: self.annotations(),
                        });
                    }
                }
                Command::StartProvider {
                    host_id,
                    provider_id,
                    image,
                    ..
                } => {
                    if !self
                        .providers
                        .iter()
                        .any(|i| i.host_id == *host_id && i.provider_id == *provider_id)
                    {
                        self.providers.push(ProviderInstance {
                            host_id: host_id.clone(),
                            provider_id: provider_id.clone(),
                            image: image.clone(),
                            annotations: self.annotations(),
                        });
                    }
                }
                Command::StopProvider {
                    host_id,
                    provider_id,
                } => self
                    .providers
                    .retain(|i| !(i.host_id == *host_id && i.provider_id == *provider_id)),
                Command::PutLink(link) => self.put_link(link.clone()),
                Command::DeleteLink {
                    source_id,
                    name,
                    wit_namespace,
                    wit_package,
                } => self.links.retain(|l| {
                    !(l.source_id == *source_id
                        && l.name == *name
                        && l.wit_namespace == *wit_namespace
                        && l.wit_package == *wit_package)
                }),
                Command::PutConfig { name, entries } => {
                    self.configs.insert(name.clone(), entries.clone());
                }
                Command::DeleteConfig(name) => {
                    self.configs.remove(name);
                }
            }
        }
    }

    fn put_link(&mut self, link: Link) {
        self.links.retain(|l| !l.same_slot(&link));
        self.links.push(link);
    }

    /// Instances per host: of component or provider `id`, or of anything when `None`,
    /// counted in one pass (ranking looks them up for every candidate host).
    fn counts(&self, id: Option<&str>) -> BTreeMap<&str, u64> {
        let wanted = |other: &str| id.is_none_or(|id| id == other);
        let component_hosts = self
            .components
            .iter()
            .filter(|i| wanted(&i.component_id))
            .map(|i| (i.host_id.as_str(), u64::from(i.count)));
        let provider_hosts = self
            .providers
            .iter()
            .filter(|i| wanted(&i.provider_id))
            .map(|i| (i.host_id.as_str(), 1));
        let mut counts = BTreeMap::new();
        for (host, n) in component_hosts.chain(provider_hosts) {
            *counts.entry(host).or_insert(0) += n;
        }
        counts
    }
}

impl Lattice for TestLattice {
    fn hosts(&self) -> Vec<Host> {
        self.hosts.values().cloned().collect()
    }

    fn host(&self, id: &str) -> Option<Host> {
        self.hosts.get(id).cloned()
    }

    fn hosts_matching(&self, requirements: &Labels) -> Vec<Host> {
        self.hosts
            .values()
            .filter(|h| labels::matches(&h.labels, requirements))
            .cloned()
            .collect()
    }

    fn host_count(&self) -> u32 {
        self.hosts.len() as u32
    }

    fn component_instances(&self, component_id: &str) -> Vec<ComponentInstance> {
        let mut found: Vec<ComponentInstance> = self
            .components
            .iter()
            .filter(|i| i.component_id == component_id)
            .cloned()
            .collect();
        found.sort_by(|a, b| a.host_id.cmp(&b.host_id));
        found
    }

    fn provider_instances(&self, provider_id: &str) -> Vec<ProviderInstance> {
        let mut found: Vec<ProviderInstance> = self
            .providers
            .iter()
            .filter(|i| i.provider_id == provider_id)
            .cloned()
            .collect();
        found.sort_by(|a, b| a.host_id.cmp(&b.host_id));
        found
    }

    fn links_from(&self, source_id: &str) -> Vec<Link> {
        self.links
            .iter()
            .filter(|l| l.source_id == source_id)
            .cloned()
            .collect()
    }

    fn config(&self, name: &str) -> Option<Labels> {
        self.configs.get(name).cloned()
    }

    fn now_ms(&self) -> u64 {
        self.now_ms
    }

    fn instance_counts(&self, component_id: Option<&str>) -> BTreeMap<String, u32> {
        self.counts(component_id)
            .into_iter()
            .map(|(host, n)| (host.to_string(), u32::try_from(n).unwrap_or(u32::MAX)))
            .collect()
    }

    fn host_vitals(&self, ids: &[String]) -> Vec<Option<HostVitals>> {
        let instances = self.counts(None);
        ids.iter()
            .map(|id| self.vitals_of(id, &instances))
            .collect()
    }

    fn component_traffic(&self, component_id: &str) -> Vec<Traffic> {
        self.traffic.get(component_id).cloned().unwrap_or_default()
    }

    fn rank_hosts(&self, request: &PlacementRequest) -> Vec<String> {
        let same = self.counts(Some(&request.component_id));
        let load = self.counts(None);
        let count =
            |counts: &BTreeMap<&str, u64>, host: &str| counts.get(host).copied().unwrap_or(0);
        let mut feasible: Vec<&Host> = self
            .hosts
            .values()
            .filter(|h| labels::matches(&h.labels, &request.requirements))
            .collect();
        // As the controller: suspect hosts only when no healthy one qualifies.
        if feasible
            .iter()
            .any(|h| self.health_of(&h.id) == Health::Healthy)
        {
            feasible.retain(|h| self.health_of(&h.id) == Health::Healthy);
        }
        let size = self.shortlist.unwrap_or(usize::MAX).min(feasible.len());
        let start = match feasible.len() {
            0 => 0,
            n => self.rotation.get() % n,
        };
        if self.shortlist.is_some() {
            self.rotation.set(start + size);
        }
        let mut ranked: Vec<(u64, u64, &str)> = feasible
            .iter()
            .cycle()
            .skip(start)
            .take(size)
            .map(|h| (count(&same, &h.id), count(&load, &h.id), h.id.as_str()))
            .collect();
        ranked.sort();
        ranked
            .into_iter()
            .map(|(_, _, id)| id.to_string())
            .collect()
    }
}

/// Ranks hosts as the controller would with `P` as the only placement plugin: candidates are
/// the hosts carrying the requested labels (healthy ones, while any qualifies), `P::filter`
/// drops some, `P::score` orders the rest (best first), ties broken by the default order
/// (fewest instances of the component, fewest overall, host id). For unit tests of placement
/// plugins.
pub fn rank_with<P: crate::Placement>(
    lattice: &TestLattice,
    request: &PlacementRequest,
) -> Vec<String> {
    let mut candidates = lattice.hosts_matching(&request.requirements);
    // As the controller: suspect hosts are offered only when no healthy one qualifies.
    if candidates
        .iter()
        .any(|h| lattice.health_of(&h.id) == Health::Healthy)
    {
        candidates.retain(|h| lattice.health_of(&h.id) == Health::Healthy);
    }
    let fits: std::collections::BTreeSet<String> = P::filter(request, &candidates, lattice)
        .into_iter()
        .filter(|v| v.fits)
        .map(|v| v.host_id)
        .collect();
    let candidates: Vec<Host> = candidates
        .into_iter()
        .filter(|h| fits.contains(&h.id))
        .collect();
    let scores: BTreeMap<String, i64> = P::score(request, &candidates, lattice)
        .into_iter()
        .map(|s| (s.host_id, s.value))
        .collect();
    let default_order = lattice.rank_hosts(request);
    let position = |id: &str| default_order.iter().position(|h| h == id);
    let mut ranked: Vec<(std::cmp::Reverse<i64>, Option<usize>, String)> = candidates
        .into_iter()
        .map(|h| {
            let score = scores.get(&h.id).copied().unwrap_or(i64::MIN);
            (std::cmp::Reverse(score), position(&h.id), h.id)
        })
        .collect();
    ranked.sort();
    ranked.into_iter().map(|(_, _, id)| id).collect()
}

/// The `ScaleComponent` a scaler of `spec` sends to set `count` instances on `host`: for
/// comparing with what `reconcile` returns.
pub fn scale(spec: &crate::ComponentSpec, host: &str, count: u32) -> Command {
    Command::ScaleComponent {
        host_id: host.into(),
        component_id: spec.id.clone(),
        image: spec.image.clone(),
        count,
        config: spec.config.clone(),
    }
}

/// The `StartProvider` a scaler of `spec` sends for `host`.
pub fn start(spec: &crate::ComponentSpec, host: &str) -> Command {
    Command::StartProvider {
        host_id: host.into(),
        provider_id: spec.id.clone(),
        image: spec.image.clone(),
        config: spec.config.clone(),
    }
}

/// The `StopProvider` a scaler of `spec` sends for `host`.
pub fn stop(spec: &crate::ComponentSpec, host: &str) -> Command {
    Command::StopProvider {
        host_id: host.into(),
        provider_id: spec.id.clone(),
    }
}

/// A context for unit tests: app `app`, one component `web` (id `app-web`, image
/// `file://web.wasm`) carrying a trait of `trait_type` with `properties` (JSON text).
pub fn scaler_context(trait_type: &str, properties: &str) -> crate::ScalerContext {
    let component = crate::ComponentSpec {
        name: "web".into(),
        kind: crate::ComponentKind::Component,
        image: "file://web.wasm".into(),
        id: "app-web".into(),
        config: vec![],
    };
    crate::ScalerContext {
        app: "app".into(),
        version: "v1".into(),
        components: vec![component.clone()],
        component,
        trait_type: trait_type.into(),
        properties: properties.into(),
        memo: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::label_map as pairs;

    #[test]
    fn ranking_prefers_fewest_same_then_fewest_overall_then_id() {
        let lattice = TestLattice::new()
            .with_host("a", &[("region", "east")])
            .with_host("b", &[("region", "east")])
            .with_host("c", &[("region", "west")])
            .with_host("d", &[("region", "east")])
            .with_component("a", "app-echo", 2)
            .with_component("b", "other", 3)
            .with_provider("d", "other-provider");
        let all = PlacementRequest {
            component_id: "app-echo".into(),
            requirements: Labels::new(),
        };
        assert_eq!(lattice.rank_hosts(&all), ["c", "d", "b", "a"]);
        let east = PlacementRequest {
            requirements: pairs(&[("region", "east")]),
            ..all
        };
        assert_eq!(lattice.rank_hosts(&east), ["d", "b", "a"]);
    }

    #[test]
    fn queries_and_apply() {
        let mut lattice = TestLattice::new()
            .with_host("b", &[])
            .with_host("a", &[("zone", "1")])
            .with_config("c", &[("k", "v")])
            .with_now(42);
        assert_eq!(lattice.host_count(), 2);
        assert_eq!(
            lattice
                .hosts()
                .iter()
                .map(|h| h.id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(lattice.hosts_matching(&pairs(&[("zone", "1")])).len(), 1);
        assert_eq!(lattice.config("c"), Some(pairs(&[("k", "v")])));
        assert_eq!(lattice.now_ms(), 42);

        lattice.apply(&[
            Command::ScaleComponent {
                host_id: "b".into(),
                component_id: "x".into(),
                image: "img".into(),
                count: 2,
                config: vec![],
            },
            Command::StartProvider {
                host_id: "a".into(),
                provider_id: "p".into(),
                image: "img".into(),
                config: vec![],
            },
            Command::DeleteConfig("c".into()),
        ]);
        assert_eq!(lattice.component_instances("x")[0].count, 2);
        assert_eq!(lattice.provider_instances("p")[0].host_id, "a");
        assert_eq!(lattice.config("c"), None);

        let lattice = lattice.without_host("b");
        assert!(lattice.component_instances("x").is_empty());
        assert!(lattice.host("b").is_none());
    }

    #[test]
    fn batched_queries_answer_as_the_single_ones() {
        let lattice = TestLattice::new()
            .with_host("a", &[("zone", "1")])
            .with_host("c", &[])
            .with_component("c", "x", 2)
            .with_component("a", "x", 1)
            .with_component("a", "y", 4);
        let ids = ["c", "gone", "a", "c"].map(String::from);
        let hosts = lattice.hosts_by_id(&ids);
        assert_eq!(
            hosts,
            ids.iter().map(|id| lattice.host(id)).collect::<Vec<_>>()
        );
        assert_eq!(hosts[1], None);
        assert_eq!(hosts[2].as_ref().unwrap().labels, pairs(&[("zone", "1")]));

        let counts = lattice.component_counts("x");
        let from_instances: Vec<(String, String, u32)> = lattice
            .component_instances("x")
            .into_iter()
            .map(|i| (i.host_id, i.image, i.count))
            .collect();
        assert_eq!(
            counts
                .into_iter()
                .map(|c| (c.host_id, c.image, c.count))
                .collect::<Vec<_>>(),
            from_instances
        );
        assert_eq!(from_instances.len(), 2);
        assert!(lattice.component_counts("none").is_empty());
    }

    /// A shortlisted lattice ranks the next hosts on each call, and `rank_at_least` gathers
    /// distinct hosts across calls, stopping when no new host comes.
    #[test]
    fn shortlists_rotate_and_rank_at_least_gathers_distinct_hosts() {
        let lattice = ["a", "b", "c", "d", "e"]
            .iter()
            .fold(TestLattice::new(), |l, id| l.with_host(id, &[]))
            .with_shortlist(2);
        let request = PlacementRequest {
            component_id: "x".into(),
            requirements: Labels::new(),
        };
        assert_eq!(lattice.rank_hosts(&request), ["a", "b"]);
        assert_eq!(lattice.rank_hosts(&request), ["c", "d"]);
        assert_eq!(lattice.rank_hosts(&request), ["a", "e"]);
        let mut gathered = lattice.rank_at_least(&request, 4);
        assert_eq!(gathered.len(), 4);
        gathered.sort();
        gathered.dedup();
        assert_eq!(gathered.len(), 4, "distinct hosts");
        assert_eq!(lattice.rank_at_least(&request, 9).len(), 5, "all there are");
        assert!(lattice.rank_at_least(&request, 0).is_empty());
        // Without a shortlist, one call ranks every host.
        let whole = TestLattice::new().with_host("a", &[]).with_host("b", &[]);
        assert_eq!(whole.rank_at_least(&request, 1), ["a", "b"]);
    }
}
