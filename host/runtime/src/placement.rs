//! Placement: which hosts should take one more instance, best first.
//!
//! Every loaded placement plugin takes part, as in the Kubernetes scheduler framework: their
//! filters run in order (a host must pass all), then each plugin's scores are normalised to
//! 0..=100 and summed. With no placement plugin loaded, hosts carrying the requested labels
//! are ranked by fewest instances of the same component, then fewest instances overall, then
//! host id, so that placement is always deterministic.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::bindings::{HostInfo, PlacementRequest};
use crate::error::CallError;
use crate::plugin::Plugin;
use crate::snapshot::LatticeSnapshot;

pub fn rank(
    placements: &[Arc<Plugin>],
    snapshot: &Arc<LatticeSnapshot>,
    request: &PlacementRequest,
) -> Result<Vec<String>, CallError> {
    let mut candidates: Vec<HostInfo> = snapshot.hosts_matching(&request.requirements);
    for plugin in placements {
        if candidates.is_empty() {
            break;
        }
        let verdicts = plugin.filter(request, &candidates, snapshot)?;
        let fits: BTreeMap<&str, bool> = verdicts
            .iter()
            .map(|v| (v.host_id.as_str(), v.fits))
            .collect();
        candidates.retain(|h| fits.get(h.id.as_str()).copied().unwrap_or(false));
    }
    let mut totals: BTreeMap<String, i64> = candidates.iter().map(|h| (h.id.clone(), 0)).collect();
    for plugin in placements {
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
    let load = snapshot.instance_counts(None);
    let count = |counts: &BTreeMap<&str, u64>, host: &str| counts.get(host).copied().unwrap_or(0);
    let mut ranked: Vec<(i64, u64, u64, String)> = candidates
        .iter()
        .map(|h| {
            (
                -totals.get(&h.id).copied().unwrap_or(0),
                count(&same, &h.id),
                count(&load, &h.id),
                h.id.clone(),
            )
        })
        .collect();
    ranked.sort();
    Ok(ranked.into_iter().map(|(_, _, _, id)| id).collect())
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

    fn host(id: &str, labels: &[(&str, &str)]) -> HostInfo {
        HostInfo {
            id: id.into(),
            friendly_name: id.into(),
            labels: labels
                .iter()
                .map(|(k, v)| Pair {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            uptime_seconds: 0,
        }
    }

    #[test]
    fn default_ranking_prefers_fewest_instances_then_id() {
        let mut snap = LatticeSnapshot::default();
        for (id, region) in [("a", "east"), ("b", "east"), ("c", "west")] {
            snap.hosts
                .insert(id.into(), host(id, &[("region", region)]));
        }
        snap.components.insert(
            "app-echo".into(),
            vec![ComponentInstance {
                host_id: "a".into(),
                component_id: "app-echo".into(),
                image: "x".into(),
                count: 2,
                annotations: vec![],
            }],
        );
        let snap = Arc::new(snap);
        let request = PlacementRequest {
            component_id: "app-echo".into(),
            requirements: vec![],
        };
        assert_eq!(rank(&[], &snap, &request).unwrap(), ["b", "c", "a"]);
        let east = PlacementRequest {
            component_id: "app-echo".into(),
            requirements: vec![Pair {
                key: "region".into(),
                value: "east".into(),
            }],
        };
        assert_eq!(rank(&[], &snap, &east).unwrap(), ["b", "a"]);
    }
}
