//! The lattice as a plugin queries it. In a wasm plugin this is the host's `lattice-view`
//! resource plus the `placement-ranking` import; in a unit test it is
//! [`TestLattice`](crate::testing::TestLattice).

use std::collections::BTreeMap;

use crate::types::{
    ComponentCount, ComponentInstance, Host, Labels, Link, PlacementRequest, ProviderInstance,
};
use crate::vitals::{HostVitals, Traffic};

/// Read-only queries on one snapshot of the lattice. Every answer is ordered (by host id where
/// it lists hosts), so that a plugin's decision is reproducible.
pub trait Lattice {
    /// Every host, ordered by id. On a big lattice prefer the narrower queries.
    fn hosts(&self) -> Vec<Host>;
    /// One host by id.
    fn host(&self, id: &str) -> Option<Host>;
    /// Several hosts by id: at each position the host of the id at that position, `None` where
    /// the lattice has no such host. In a wasm plugin this is one call into the host instead
    /// of one per id (each call has a fixed cost); the default asks [`host`](Self::host) for
    /// each id, which is as good for a lattice in the plugin's own memory.
    fn hosts_by_id(&self, ids: &[String]) -> Vec<Option<Host>> {
        ids.iter().map(|id| self.host(id)).collect()
    }
    /// Hosts carrying every one of the given labels, ordered by id.
    fn hosts_matching(&self, requirements: &Labels) -> Vec<Host>;
    /// How many hosts the lattice has.
    fn host_count(&self) -> u32;
    /// Where a component runs, ordered by host id.
    fn component_instances(&self, component_id: &str) -> Vec<ComponentInstance>;
    /// Where a component runs, ordered by host id: [`component_instances`](Self::component_instances)
    /// without the component id and annotations, for a scaler that only counts instances and
    /// compares images. In a wasm plugin every string left out is one copy fewer per instance;
    /// the default takes them from `component_instances`.
    fn component_counts(&self, component_id: &str) -> Vec<ComponentCount> {
        self.component_instances(component_id)
            .into_iter()
            .map(|i| ComponentCount {
                host_id: i.host_id,
                image: i.image,
                count: i.count,
            })
            .collect()
    }
    /// Where a provider runs, ordered by host id.
    fn provider_instances(&self, provider_id: &str) -> Vec<ProviderInstance>;
    /// Links whose source is the given id.
    fn links_from(&self, source_id: &str) -> Vec<Link>;
    /// A named config, if it exists.
    fn config(&self, name: &str) -> Option<Labels>;
    /// Instances per host of one component or provider id, or of everything when `None`;
    /// hosts that run none are left out.
    fn instance_counts(&self, component_id: Option<&str>) -> BTreeMap<String, u32>;
    /// Logical time in milliseconds: the same for every call of one reconcile pass.
    fn now_ms(&self) -> u64;
    /// Hosts able to take one more instance, best first, as the loaded placement plugins
    /// rank them. On a large lattice the controller ranks a shortlist of the hosts that carry
    /// the requested labels (a share of them, at least 100 by default), starting where its
    /// previous ranking stopped: asking again gives the next hosts, and successive calls see
    /// every qualifying host before one comes round again. A scaler that wants several hosts
    /// asks [`rank_at_least`](Self::rank_at_least).
    fn rank_hosts(&self, request: &PlacementRequest) -> Vec<String>;

    /// Health, CPU and memory of several hosts by id, in one call: at each position the
    /// vitals of the id at that position, `None` where the lattice has no such host. The
    /// default says every known host is healthy and reports nothing.
    fn host_vitals(&self, ids: &[String]) -> Vec<Option<HostVitals>> {
        ids.iter()
            .map(|id| self.host(id).map(|_| HostVitals::unreported(id)))
            .collect()
    }

    /// A component's traffic on each host that reports it, ordered by host id. The default
    /// has none.
    fn component_traffic(&self, component_id: &str) -> Vec<Traffic> {
        let _ = component_id;
        Vec::new()
    }

    /// At least `count` distinct hosts able to take one more instance (fewer when fewer
    /// qualify), best first within each shortlist: asks [`rank_hosts`](Self::rank_hosts)
    /// again while it brings hosts not seen yet. For a scaler placing `count` instances on
    /// hosts of their own.
    fn rank_at_least(&self, request: &PlacementRequest, count: usize) -> Vec<String> {
        let mut ranking = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        while ranking.len() < count {
            let before = ranking.len();
            for host in self.rank_hosts(request) {
                if seen.insert(host.clone()) {
                    ranking.push(host);
                }
            }
            if ranking.len() == before {
                break;
            }
        }
        ranking
    }
}
