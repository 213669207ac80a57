//! The default placement promises the controller's default order (fewest instances of the
//! component, then fewest overall, then host id) for any lattice, including hosts that claim
//! the largest counts a heartbeat can carry (issue 16: bad input never breaks the ranking).

use proptest::prelude::*;
use trellis_plugin_placement::DefaultPlacement;
use trellis_sdk::testing::{rank_with, TestLattice};
use trellis_sdk::{label_map, Lattice, PlacementRequest};

const HOSTS: [&str; 4] = ["a", "b", "c", "d"];
const COMPONENTS: [&str; 3] = ["app-echo", "other", "third"];

/// Counts as a host may report them: small ones, and the largest there are.
fn count() -> impl Strategy<Value = u32> {
    prop_oneof![3 => 1u32..5, 1 => Just(u32::MAX), 1 => any::<u32>()]
}

fn lattice() -> impl Strategy<Value = TestLattice> {
    (
        prop::collection::vec(prop::sample::select(vec!["east", "west"]), HOSTS.len()),
        prop::collection::vec(
            (
                prop::sample::select(HOSTS.to_vec()),
                prop::sample::select(COMPONENTS.to_vec()),
                count(),
            ),
            0..8,
        ),
        prop::collection::vec(prop::sample::select(HOSTS.to_vec()), 0..3),
    )
        .prop_map(|(regions, components, providers)| {
            let mut lattice = TestLattice::new();
            for (host, region) in HOSTS.iter().zip(regions) {
                lattice = lattice.with_host(host, &[("region", region)]);
            }
            for (host, component, n) in components {
                lattice = lattice.with_component(host, component, n);
            }
            for host in providers {
                lattice = lattice.with_provider(host, "some-provider");
            }
            lattice
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn ranks_in_the_default_order(
        lattice in lattice(),
        component in prop::sample::select(COMPONENTS.to_vec()),
        region in prop::option::of(prop::sample::select(vec!["east", "west"])),
    ) {
        let requirements: Vec<(&str, &str)> = region.iter().map(|r| ("region", *r)).collect();
        let request = PlacementRequest {
            component_id: component.into(),
            requirements: label_map(&requirements),
        };
        prop_assert_eq!(
            rank_with::<DefaultPlacement>(&lattice, &request),
            lattice.rank_hosts(&request)
        );
    }
}

/// Found by `ranks_in_the_default_order`: a host claiming u32::MAX instances made the score
/// `same * scale + overall` overflow (a panic natively, a wrapped score that ranked the fullest
/// host first in the wasm build).
#[test]
fn a_host_claiming_the_most_instances_ranks_last() {
    let lattice = TestLattice::new()
        .with_host("a", &[])
        .with_host("b", &[])
        .with_component("a", "app-echo", u32::MAX);
    let request = PlacementRequest {
        component_id: "app-echo".into(),
        requirements: label_map::<&str, &str>(&[]),
    };
    assert_eq!(
        rank_with::<DefaultPlacement>(&lattice, &request),
        ["b", "a"]
    );
}
