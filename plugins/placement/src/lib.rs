//! The built-in default placement: where one more instance of a component or provider goes.
//!
//! - Filter: a host must carry every requested label (the controller already offers only such
//!   hosts; checking again keeps the plugin right on its own, e.g. in unit tests), and a
//!   provider never goes twice on one host.
//! - Score: fewest instances of the same component first (spreads a component out). The
//!   controller breaks ties by fewest instances overall (evens the load), then host id, so the
//!   ranking is stable. The overall counts are not asked here: on a 10,000-host lattice they
//!   are thousands of rows per call, most of a ranking's cost (decision 0012), while the
//!   controller keeps them at hand.

use trellis_sdk::{
    labels, Host, HostScore, Lattice, Placement, PlacementRequest, PluginInfo, Verdict,
};

pub struct DefaultPlacement;

impl Placement for DefaultPlacement {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "default-placement".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            trait_types: Vec::new(),
            description: "Hosts with the requested labels; fewest instances of the component \
                          (ties: fewest overall)"
                .into(),
        }
    }

    fn filter(
        request: &PlacementRequest,
        candidates: &[Host],
        lattice: &dyn Lattice,
    ) -> Vec<Verdict> {
        // A provider runs at most once per host: hosts that run it are full.
        let provider_hosts: std::collections::BTreeSet<String> = lattice
            .provider_instances(&request.component_id)
            .into_iter()
            .map(|p| p.host_id)
            .collect();
        candidates
            .iter()
            .map(|host| {
                if !labels::matches(&host.labels, &request.requirements) {
                    Verdict::refused(
                        &host.id,
                        format!(
                            "lacks the labels {}",
                            labels::describe(&request.requirements)
                        ),
                    )
                } else if provider_hosts.contains(&host.id) {
                    Verdict::refused(
                        &host.id,
                        format!("already runs provider '{}'", request.component_id),
                    )
                } else {
                    Verdict::fits(&host.id)
                }
            })
            .collect()
    }

    fn score(
        request: &PlacementRequest,
        candidates: &[Host],
        lattice: &dyn Lattice,
    ) -> Vec<HostScore> {
        let same = lattice.instance_counts(Some(&request.component_id));
        let count = |host: &Host| same.get(&host.id).copied().unwrap_or(0);
        // The count's place among the candidates' distinct counts, fewest first. Not the count
        // itself: a host may claim any count, and the controller normalises scores over their
        // range, where one outlier would squash every other difference.
        let mut counts: Vec<u32> = candidates.iter().map(count).collect();
        counts.sort_unstable();
        counts.dedup();
        candidates
            .iter()
            .map(|host| HostScore {
                host_id: host.id.clone(),
                value: -(counts.partition_point(|&c| c < count(host)) as i64),
            })
            .collect()
    }
}

trellis_sdk::export_placement!(DefaultPlacement);

#[cfg(test)]
mod tests {
    use trellis_sdk::testing::{rank_with, TestLattice};
    use trellis_sdk::{label_map, Lattice};

    use super::*;

    fn request(id: &str, requirements: &[(&str, &str)]) -> PlacementRequest {
        PlacementRequest {
            component_id: id.into(),
            requirements: label_map(requirements),
        }
    }

    fn lattice() -> TestLattice {
        TestLattice::new()
            .with_host("a", &[("region", "east")])
            .with_host("b", &[("region", "east")])
            .with_host("c", &[("region", "west")])
            .with_host("d", &[("region", "east")])
            .with_component("a", "app-echo", 2)
            .with_component("b", "other", 3)
            .with_provider("d", "other-provider")
    }

    #[test]
    fn fewest_same_then_fewest_overall_then_id() {
        let all = request("app-echo", &[]);
        assert_eq!(
            rank_with::<DefaultPlacement>(&lattice(), &all),
            ["c", "d", "b", "a"]
        );
        let east = request("app-echo", &[("region", "east")]);
        assert_eq!(
            rank_with::<DefaultPlacement>(&lattice(), &east),
            ["d", "b", "a"]
        );
    }

    #[test]
    fn same_component_outweighs_any_load() {
        // a: 1 of ours; b: 50 others. Ours goes to b: spreading beats balancing.
        let lattice = TestLattice::new()
            .with_host("a", &[])
            .with_host("b", &[])
            .with_component("a", "app-echo", 1)
            .with_component("b", "busy", 50);
        let scores = DefaultPlacement::score(&request("app-echo", &[]), &lattice.hosts(), &lattice);
        assert!(scores[1].value > scores[0].value, "{scores:?}");
    }

    #[test]
    fn filter_refuses_missing_labels_and_hosts_running_the_provider() {
        let lattice = lattice();
        let verdicts = DefaultPlacement::filter(
            &request("other-provider", &[("region", "east")]),
            &lattice.hosts(),
            &lattice,
        );
        let refused: Vec<(&str, &str)> = verdicts
            .iter()
            .filter(|v| !v.fits)
            .map(|v| (v.host_id.as_str(), v.reason.as_str()))
            .collect();
        assert_eq!(
            refused,
            [
                ("c", "lacks the labels region=east"),
                ("d", "already runs provider 'other-provider'")
            ]
        );
    }
}
