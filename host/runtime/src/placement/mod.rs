//! Placement: which hosts should take one more instance, best first.
//!
//! Every loaded placement plugin takes part, as in the Kubernetes scheduler framework: their
//! filters run in order (a host must pass all), then each plugin's scores are normalised to
//! 0..=100 and summed. With no placement plugin loaded, hosts carrying the requested labels
//! are ranked by fewest instances of the same component, then fewest instances overall, then
//! host id, so that placement is always deterministic.
//!
//! Suspect hosts (missed heartbeats; see the controller's health) are left out while any healthy
//! host fits, so new work goes to hosts that are steady; they keep what they run.
//!
//! Plugins never see hosts that lack the requested labels (the snapshot's label index finds
//! those that carry them), and a ranking looks at a [`Shortlist`] of those, not at all of them.

mod shortlist;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use shortlist::{Shortlist, SHORTLIST_FLOOR, SHORTLIST_PERCENT};

use crate::bindings::{HostInfo, PlacementRequest};
use crate::error::CallError;
use crate::plugin::Plugin;
use crate::snapshot::{Health, LatticeSnapshot};

/// The placement plugins in service, in the order their filters run, and how a ranking
/// shortlists hosts. What a scaler's `rank-hosts` consults.
#[derive(Debug, Clone, Default)]
pub struct Placements {
    pub plugins: Arc<[Arc<Plugin>]>,
    pub shortlist: Shortlist,
}

/// The hosts able to take one more instance of `request`, best first: up to a shortlist's
/// worth (see [`Shortlist`]), starting where the snapshot's previous ranking stopped. Hosts the
/// filters refuse are replaced by the next ones, so a shortlist is full whenever enough hosts
/// fit. Asking again (in the same pass) gives the next hosts.
pub fn rank(
    placements: &Placements,
    snapshot: &Arc<LatticeSnapshot>,
    request: &PlacementRequest,
) -> Result<Vec<String>, CallError> {
    let directory = snapshot.directory();
    let feasible = directory.matching(&request.requirements);
    let wanted = placements.shortlist.size(feasible.len());
    let mut visit = shortlist::visiting_order(feasible.len(), snapshot.rotation())
        .map(|i| directory.at(feasible[i]));
    let mut visited = 0;
    let mut candidates: Vec<HostInfo> = Vec::with_capacity(wanted);
    // Suspect hosts are passed over while healthy ones fit, and taken only when none does.
    let avoid_suspects = snapshot.vitals.any_unhealthy();
    let mut suspects: Vec<HostInfo> = Vec::new();
    while candidates.len() < wanted {
        let mut batch: Vec<HostInfo> = visit
            .by_ref()
            .take(wanted - candidates.len())
            .map(|h| snapshot.describe(h))
            .collect();
        if batch.is_empty() {
            break;
        }
        visited += batch.len();
        if avoid_suspects {
            batch.retain(|h| {
                let healthy = snapshot.vitals.health(&h.id) == Health::Healthy;
                if !healthy && suspects.len() < wanted {
                    suspects.push(h.clone());
                }
                healthy
            });
        }
        candidates.extend(filtered(placements, request, batch, snapshot)?);
    }
    if candidates.is_empty() && !suspects.is_empty() {
        candidates = filtered(placements, request, suspects, snapshot)?;
    }
    snapshot.advance_rotation(visited as u64);

    let mut totals: BTreeMap<String, i64> = candidates.iter().map(|h| (h.id.clone(), 0)).collect();
    for plugin in placements.plugins.iter() {
        if candidates.is_empty() {
            break;
        }
        let scores = plugin.score(request, &candidates, snapshot)?;
        let (min, max) = scores.iter().fold((i64::MAX, i64::MIN), |(lo, hi), s| {
            (lo.min(s.value), hi.max(s.value))
        });
        for s in &scores {
            if let Some(total) = totals.get_mut(&s.host_id) {
                *total += normalise(s.value, min, max);
            }
        }
    }
    let same = snapshot.instance_counts(Some(&request.component_id));
    let mut ranked: Vec<(i64, u64, u64, String)> = candidates
        .into_iter()
        .map(|h| {
            (
                -totals.get(&h.id).copied().unwrap_or(0),
                same.get(h.id.as_str()).copied().unwrap_or(0),
                snapshot.load_of(&h.id),
                h.id,
            )
        })
        .collect();
    ranked.sort();
    Ok(ranked.into_iter().map(|(_, _, _, id)| id).collect())
}

/// The hosts of `batch` every placement plugin's filter lets through.
fn filtered(
    placements: &Placements,
    request: &PlacementRequest,
    mut batch: Vec<HostInfo>,
    snapshot: &Arc<LatticeSnapshot>,
) -> Result<Vec<HostInfo>, CallError> {
    for plugin in placements.plugins.iter() {
        if batch.is_empty() {
            break;
        }
        let verdicts = plugin.filter(request, &batch, snapshot)?;
        let fits: BTreeMap<&str, bool> = verdicts
            .iter()
            .map(|v| (v.host_id.as_str(), v.fits))
            .collect();
        batch.retain(|h| fits.get(h.id.as_str()).copied().unwrap_or(false));
    }
    Ok(batch)
}

/// A plugin's score as 0–100 of the range its scores span (100 when they are all equal). In
/// i128: a plugin may return any i64, and `i64::MAX - i64::MIN` or `value * 100` would overflow
/// (a panic that would lose the whole pass, every tick).
fn normalise(value: i64, min: i64, max: i64) -> i64 {
    if max <= min {
        return 100;
    }
    let (value, min, max) = (i128::from(value), i128::from(min), i128::from(max));
    // `value` lies within [min, max], so this is within 0..=100.
    ((value - min) * 100 / (max - min)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Whatever a plugin returns, a score becomes 0..=100 and keeps its order.
        #[test]
        fn normalised_scores_stay_within_0_to_100(a in any::<i64>(), b in any::<i64>(), c in any::<i64>()) {
            let (min, max) = (a.min(b).min(c), a.max(b).max(c));
            for v in [a, b, c] {
                let n = normalise(v, min, max);
                prop_assert!((0..=100).contains(&n), "{v} in [{min}, {max}] gave {n}");
            }
            prop_assert!(normalise(min, min, max) <= normalise(max, min, max));
        }
    }

    #[test]
    fn extreme_scores_do_not_overflow() {
        assert_eq!(normalise(i64::MAX, i64::MIN, i64::MAX), 100);
        assert_eq!(normalise(i64::MIN, i64::MIN, i64::MAX), 0);
        assert_eq!(normalise(0, i64::MIN, i64::MAX), 50);
        assert_eq!(normalise(7, 7, 7), 100);
    }
    use crate::bindings::{ComponentInstance, Pair};
    use crate::snapshot::test_host as host;

    #[test]
    fn default_ranking_prefers_fewest_instances_then_id() {
        let mut snap = LatticeSnapshot::of_hosts(
            [("a", "east"), ("b", "east"), ("c", "west")]
                .map(|(id, region)| host(id, &[("region", region)])),
        );
        snap.put_component(ComponentInstance {
            host_id: "a".into(),
            component_id: "app-echo".into(),
            image: "x".into(),
            count: 2,
            annotations: vec![],
        });
        let snap = Arc::new(snap);
        let none = Placements::default();
        let request = PlacementRequest {
            component_id: "app-echo".into(),
            requirements: vec![],
        };
        assert_eq!(rank(&none, &snap, &request).unwrap(), ["b", "c", "a"]);
        let east = PlacementRequest {
            component_id: "app-echo".into(),
            requirements: vec![Pair {
                key: "region".into(),
                value: "east".into(),
            }],
        };
        assert_eq!(rank(&none, &snap, &east).unwrap(), ["b", "a"]);
    }

    #[test]
    fn suspect_hosts_get_work_only_when_no_healthy_host_fits() {
        use crate::snapshot::{HostVitals, Vitals};
        let mut snap = LatticeSnapshot::of_hosts(
            [("a", "east"), ("b", "east"), ("c", "west")]
                .map(|(id, region)| host(id, &[("region", region)])),
        );
        let suspect = HostVitals {
            health: Health::Suspect,
            ..HostVitals::default()
        };
        snap.vitals = Vitals::default();
        snap.vitals.set_host("a", suspect);
        snap.vitals.set_host("c", suspect);
        let snap = Arc::new(snap);
        let none = Placements::default();
        let any = PlacementRequest {
            component_id: "app-echo".into(),
            requirements: vec![],
        };
        assert_eq!(rank(&none, &snap, &any).unwrap(), ["b"]);
        let west = PlacementRequest {
            component_id: "app-echo".into(),
            requirements: vec![Pair {
                key: "region".into(),
                value: "west".into(),
            }],
        };
        assert_eq!(
            rank(&none, &snap, &west).unwrap(),
            ["c"],
            "only a suspect host fits"
        );
    }

    /// On a lattice larger than the floor, each ranking gets the next hosts, and successive
    /// rankings cover every feasible host before any comes round again.
    #[test]
    fn successive_rankings_walk_the_feasible_hosts() {
        let hosts = (0..10).map(|i| {
            let zone = if i % 2 == 0 { "even" } else { "odd" };
            host(&format!("h{i}"), &[("zone", zone)])
        });
        let snap = Arc::new(LatticeSnapshot::of_hosts(hosts));
        let placements = Placements {
            plugins: Arc::new([]),
            shortlist: Shortlist {
                percent: Some(40),
                floor: 1,
            },
        };
        let even = PlacementRequest {
            component_id: "c".into(),
            requirements: vec![Pair {
                key: "zone".into(),
                value: "even".into(),
            }],
        };
        let mut seen = Vec::new();
        for _ in 0..3 {
            let ranked = rank(&placements, &snap, &even).unwrap();
            assert_eq!(ranked.len(), 2, "40 % of 5 feasible hosts");
            seen.extend(ranked);
        }
        // The third shortlist wraps round; within a shortlist, ties go by host id.
        assert_eq!(seen, ["h0", "h2", "h4", "h6", "h0", "h8"]);
    }
}
