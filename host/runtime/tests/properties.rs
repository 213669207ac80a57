//! Property tests of placement ranking (issue 16: bad input costs at most its size): for any
//! lattice, including hosts that claim the largest counts a heartbeat can carry, `rank` answers
//! with each candidate host once, in the documented order, and the built-in placement plugin
//! (build/plugins/placement.wasm) agrees with that order. Score normalisation has its own
//! property test in src/placement.rs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use trellis_runtime::bindings::{
    ComponentInstance, HostInfo, Pair, PlacementRequest, ProviderInstance,
};
use trellis_runtime::placement::rank;
use trellis_runtime::{host_matches, LatticeSnapshot, Placements, Runtime, Shortlist};

mod common;

const HOSTS: [&str; 5] = ["a", "b", "c", "d", "e"];
const COMPONENTS: [&str; 3] = ["app-echo", "other", "third"];

/// The built-in placement plugin, loaded once.
fn placement() -> &'static Placements {
    static LOADED: OnceLock<(Runtime, Placements, tempfile::TempDir)> = OnceLock::new();
    &LOADED
        .get_or_init(|| {
            let (runtime, dir) = common::runtime_with_built("placement");
            let plugins = runtime.plugins();
            assert_eq!(
                plugins.placements.plugins.len(),
                1,
                "{:?}",
                plugins.problems
            );
            let placements = plugins.placements.clone();
            (runtime, placements, dir)
        })
        .1
}

fn pair(key: &str, value: &str) -> Pair {
    Pair {
        key: key.into(),
        value: value.into(),
    }
}

/// Counts as a host may report them: small ones, and the largest there are.
fn count() -> impl Strategy<Value = u32> {
    prop_oneof![3 => 1u32..5, 1 => Just(u32::MAX), 1 => any::<u32>()]
}

fn snapshot() -> impl Strategy<Value = LatticeSnapshot> {
    (
        prop::collection::btree_map(
            prop::sample::select(HOSTS.to_vec()),
            prop::option::of(prop::sample::select(vec!["east", "west"])),
            0..=HOSTS.len(),
        ),
        prop::collection::btree_map(
            (
                prop::sample::select(COMPONENTS.to_vec()),
                prop::sample::select(HOSTS.to_vec()),
            ),
            count(),
            0..8,
        ),
        prop::collection::btree_set(prop::sample::select(HOSTS.to_vec()), 0..3),
    )
        .prop_map(|(hosts, instances, provider_hosts)| {
            let mut snapshot =
                LatticeSnapshot::of_hosts(hosts.into_iter().map(|(id, region)| HostInfo {
                    id: id.into(),
                    friendly_name: id.into(),
                    labels: region.map(|r| pair("region", r)).into_iter().collect(),
                    uptime_seconds: 0,
                }));
            // In host order, as the controller's snapshot keeps them; an instance may sit on a
            // host the snapshot lacks (an event raced the host's expiry).
            for ((component, host), count) in instances {
                snapshot.put_component(ComponentInstance {
                    host_id: host.into(),
                    component_id: component.into(),
                    image: "x".into(),
                    count,
                    annotations: vec![],
                });
            }
            for host in provider_hosts {
                snapshot.put_provider(ProviderInstance {
                    host_id: host.into(),
                    provider_id: "some-provider".into(),
                    image: "p".into(),
                    annotations: vec![],
                });
            }
            snapshot
        })
}

fn request() -> impl Strategy<Value = PlacementRequest> {
    (
        prop::sample::select(COMPONENTS.to_vec()),
        prop::option::of(prop::sample::select(vec!["east", "west", "north"])),
    )
        .prop_map(|(component, region)| PlacementRequest {
            component_id: component.into(),
            requirements: region.map(|r| pair("region", r)).into_iter().collect(),
        })
}

/// Instances per host in u64, summed independently of the runtime's own counting.
fn counts(snapshot: &LatticeSnapshot, id: Option<&str>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for (cid, list) in snapshot.components() {
        if id.is_none_or(|id| id == cid) {
            for i in list {
                *counts.entry(i.host_id.clone()).or_insert(0) += u64::from(i.count);
            }
        }
    }
    for (pid, list) in snapshot.providers() {
        if id.is_none_or(|id| id == pid) {
            for i in list {
                *counts.entry(i.host_id.clone()).or_insert(0) += 1;
            }
        }
    }
    counts
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// With no placement plugin: every host carrying the requested labels, once, by fewest
    /// instances of the component, then fewest overall, then host id.
    #[test]
    fn default_ranking_is_the_documented_order(snapshot in snapshot(), request in request()) {
        let snapshot = Arc::new(snapshot);
        let ranked = rank(&Placements::default(), &snapshot, &request).unwrap();
        let matching: BTreeSet<&String> = snapshot
            .directory()
            .iter()
            .filter(|h| host_matches(h, &request.requirements))
            .map(|h| &h.id)
            .collect();
        let unique: BTreeSet<&String> = ranked.iter().collect();
        prop_assert_eq!(unique.len(), ranked.len(), "a host twice: {:?}", ranked);
        prop_assert_eq!(&unique, &matching);
        let same = counts(&snapshot, Some(&request.component_id));
        let load = counts(&snapshot, None);
        let key = |h: &String| {
            (same.get(h).copied().unwrap_or(0), load.get(h).copied().unwrap_or(0), h.clone())
        };
        prop_assert!(ranked.windows(2).all(|w| key(&w[0]) < key(&w[1])), "{:?}", ranked);
    }

    /// The built-in placement plugin ranks in that same order, whatever the counts: it never
    /// refuses a host of a component, and its scores never overflow into a different order.
    #[test]
    fn the_placement_plugin_keeps_the_default_order(snapshot in snapshot(), request in request()) {
        let snapshot = Arc::new(snapshot);
        let with_plugin = rank(placement(), &snapshot, &request);
        prop_assert!(with_plugin.is_ok(), "{:?}", with_plugin.err());
        prop_assert_eq!(with_plugin.unwrap(), rank(&Placements::default(), &snapshot, &request).unwrap());
    }

    /// With a shortlist of any size, each ranking names that many matching hosts (or all,
    /// when fewer match), in the documented order; successive rankings name every matching
    /// host before naming one again.
    #[test]
    fn shortlisted_rankings_cover_every_matching_host(
        snapshot in snapshot(),
        request in request(),
        floor in 1usize..4,
    ) {
        let snapshot = Arc::new(snapshot);
        let placements = Placements {
            plugins: placement().plugins.clone(),
            shortlist: Shortlist { percent: Some(1), floor },
        };
        let matching: BTreeSet<String> = snapshot
            .directory()
            .iter()
            .filter(|h| host_matches(h, &request.requirements))
            .map(|h| h.id.clone())
            .collect();
        let size = floor.min(matching.len());
        let mut seen = BTreeSet::new();
        for _ in 0..matching.len().div_ceil(size.max(1)) {
            let ranked = rank(&placements, &snapshot, &request).unwrap();
            prop_assert_eq!(ranked.len(), size, "{:?}", ranked);
            for host in ranked {
                prop_assert!(matching.contains(&host), "{} does not match", host);
                seen.insert(host);
            }
        }
        prop_assert_eq!(seen, matching);
    }
}
