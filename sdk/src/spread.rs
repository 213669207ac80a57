//! Spread arithmetic: how many instances each spread gets, and which hosts take them.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// Splits `total` instances over spreads in proportion to `weights`, by the largest remainder
/// method: each spread gets the floor of its exact share, and the instances left over go to
/// the largest fractional remainders, earlier spreads first on ties. The result always sums to
/// `total` (when there is at least one spread) and is the same for the same input.
///
/// A spread of weight 0 gets nothing, unless every weight is 0: then all count as equal.
pub fn split_by_weight(total: usize, weights: &[usize]) -> Vec<usize> {
    if weights.is_empty() {
        return Vec::new();
    }
    let equal = weights.iter().all(|&w| w == 0);
    let weight = |w: usize| if equal { 1u128 } else { w as u128 };
    let sum: u128 = weights.iter().map(|&w| weight(w)).sum();
    let total_wide = total as u128;
    let mut shares: Vec<usize> = Vec::with_capacity(weights.len());
    let mut remainders: Vec<(Reverse<u128>, usize)> = Vec::with_capacity(weights.len());
    for (i, &w) in weights.iter().enumerate() {
        let exact = total_wide * weight(w);
        shares.push((exact / sum) as usize);
        remainders.push((Reverse(exact % sum), i));
    }
    let left = total - shares.iter().sum::<usize>();
    remainders.sort();
    for &(_, i) in remainders.iter().take(left) {
        shares[i] += 1;
    }
    shares
}

/// Places `count` instances on hosts, changing as little as possible of what runs now.
///
/// - `ranking`: the hosts that may take *more* instances, best first (from
///   [`Lattice::rank_hosts`](crate::Lattice::rank_hosts)).
/// - `current`: what runs now on hosts where it may *stay* (the caller leaves out hosts that no
///   longer qualify, so those lose their instances).
/// - `cap`: the most instances one host may hold (1 for providers), or none.
///
/// Existing instances stay where they are. Missing ones go round robin over the ranking: each
/// to the host holding the fewest so far, the better ranked on ties. Surplus ones leave the
/// host holding the most, hosts absent from the ranking and then the worse ranked first. The
/// result may hold fewer than `count` when the ranked hosts are full; hosts with zero instances
/// are left out.
pub fn distribute(
    count: usize,
    ranking: &[String],
    current: &BTreeMap<String, usize>,
    cap: Option<usize>,
) -> BTreeMap<String, usize> {
    let cap = cap.unwrap_or(usize::MAX);
    let position: BTreeMap<&str, usize> = ranking
        .iter()
        .enumerate()
        .rev() // the first position wins when a host is ranked twice
        .map(|(i, h)| (h.as_str(), i))
        .collect();
    let mut placed: BTreeMap<String, usize> = current
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(h, &n)| (h.clone(), n.min(cap)))
        .collect();
    let mut total: usize = placed.values().sum();

    if total > count {
        // Max-heap on (instances, rank position with unranked last, host id).
        let mut heap: BinaryHeap<(usize, usize, String)> = placed
            .iter()
            .map(|(h, &n)| {
                let pos = position.get(h.as_str()).copied().unwrap_or(usize::MAX);
                (n, pos, h.clone())
            })
            .collect();
        while total > count {
            let Some((n, pos, host)) = heap.pop() else {
                break;
            };
            total -= 1;
            if n > 1 {
                heap.push((n - 1, pos, host.clone()));
                placed.insert(host, n - 1);
            } else {
                placed.remove(&host);
            }
        }
    } else if total < count {
        // Min-heap on (instances, rank position) over ranked hosts with room.
        let mut heap: BinaryHeap<Reverse<(usize, usize)>> = position
            .iter()
            .map(|(h, &pos)| (placed.get(*h).copied().unwrap_or(0), pos))
            .filter(|&(n, _)| n < cap)
            .map(Reverse)
            .collect();
        while total < count {
            let Some(Reverse((n, pos))) = heap.pop() else {
                break;
            };
            let host = &ranking[pos];
            placed.insert(host.clone(), n + 1);
            total += 1;
            if n + 1 < cap {
                heap.push(Reverse((n + 1, pos)));
            }
        }
    }
    placed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
        pairs.iter().map(|(h, n)| (h.to_string(), *n)).collect()
    }

    #[test]
    fn split_even_and_uneven() {
        assert_eq!(split_by_weight(4, &[100, 100]), [2, 2]);
        assert_eq!(split_by_weight(5, &[100, 100]), [3, 2]);
        assert_eq!(split_by_weight(10, &[80, 20]), [8, 2]);
        assert_eq!(split_by_weight(3, &[1, 1, 1, 1]), [1, 1, 1, 0]);
        assert_eq!(split_by_weight(0, &[5, 5]), [0, 0]);
        assert!(split_by_weight(3, &[]).is_empty());
    }

    #[test]
    fn split_gives_leftovers_to_largest_remainders() {
        // Exact shares 1.4, 2.1, 3.5 → floors 1, 2, 3, one left for the largest remainder (.5).
        assert_eq!(split_by_weight(7, &[20, 30, 50]), [1, 2, 4]);
        // Exact shares 2.5 and 2.5: the earlier spread gets the extra one.
        assert_eq!(split_by_weight(5, &[1, 1]), [3, 2]);
    }

    #[test]
    fn split_weight_zero() {
        assert_eq!(split_by_weight(4, &[0, 100]), [0, 4]);
        assert_eq!(split_by_weight(3, &[0, 0]), [2, 1]);
    }

    #[test]
    fn split_always_sums_to_total() {
        for total in 0..50 {
            for weights in [&[1usize, 2, 3][..], &[7, 0, 13, 100], &[usize::MAX, 1]] {
                assert_eq!(split_by_weight(total, weights).iter().sum::<usize>(), total);
            }
        }
    }

    #[test]
    fn distribute_round_robin_over_ranking() {
        let ranking = hosts(&["b", "a", "c"]);
        let placed = distribute(4, &ranking, &BTreeMap::new(), None);
        assert_eq!(placed, counts(&[("b", 2), ("a", 1), ("c", 1)]));
    }

    #[test]
    fn distribute_keeps_existing_and_fills_least_loaded() {
        let ranking = hosts(&["a", "b", "c"]);
        let placed = distribute(4, &ranking, &counts(&[("c", 2)]), None);
        assert_eq!(placed, counts(&[("a", 1), ("b", 1), ("c", 2)]));
        // Already right: nothing moves even though it is not balanced.
        let placed = distribute(3, &ranking, &counts(&[("c", 3)]), None);
        assert_eq!(placed, counts(&[("c", 3)]));
    }

    #[test]
    fn distribute_trims_most_loaded_then_unranked_then_worst_ranked() {
        let ranking = hosts(&["a", "b"]);
        let current = counts(&[("a", 2), ("b", 2), ("x", 2)]);
        assert_eq!(
            distribute(5, &ranking, &current, None),
            counts(&[("a", 2), ("b", 2), ("x", 1)])
        );
        assert_eq!(
            distribute(4, &ranking, &current, None),
            counts(&[("a", 2), ("b", 1), ("x", 1)])
        );
        assert_eq!(distribute(0, &ranking, &current, None), BTreeMap::new());
    }

    #[test]
    fn distribute_respects_cap() {
        let ranking = hosts(&["a", "b"]);
        let placed = distribute(3, &ranking, &counts(&[("a", 2)]), Some(1));
        assert_eq!(placed, counts(&[("a", 1), ("b", 1)]));
    }
}
