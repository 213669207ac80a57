//! How many of the feasible hosts one ranking scores, and which.
//!
//! Ranking every host that carries the requested labels made a deploy's cost grow with the
//! lattice: at 10,000 hosts each ranking lowered 10,000 hosts into the placement plugin twice
//! (filter, then score). As the Kubernetes scheduler does (`percentageOfNodesToScore`), a
//! ranking looks at a share of the feasible hosts, never fewer than a floor, starting where the
//! previous ranking stopped, so that successive rankings walk the whole lattice and work
//! spreads over it. The trade-off (spread against cost) is measured in
//! docs/decisions/0012-placement-shortlist.md.

/// The default [`Shortlist::floor`]: up to this many feasible hosts, all are ranked. A ranking
/// costs in proportion to the hosts it looks at (about 0.2 ms per 100 with the default
/// placement plugin), while how close its choice comes to the best host depends on how many it
/// looks at, not on the share: 100 came within 0.13 instances of the idlest host on average
/// at 1,000 hosts, and as close as ranking all of them at 10,000 (decision 0012).
pub const SHORTLIST_FLOOR: usize = 100;

/// The default [`Shortlist::percent`]: past 10,000 feasible hosts, 1 % of them.
pub const SHORTLIST_PERCENT: u8 = 1;

/// The adaptive share at its smallest, in percent (as Kubernetes' minimum).
const ADAPTIVE_MIN_PERCENT: usize = 5;

/// How a ranking shortlists the feasible hosts: a share of them, never fewer than a floor. By
/// default every host up to 100, then 100 hosts up to 10,000, then 1 %: a share that shrinks
/// as the lattice grows, so that a ranking costs about the same at any size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortlist {
    /// The share of the feasible hosts to rank, in percent (1–100). `None`: Kubernetes' rule
    /// (`percentageOfNodesToScore`), 50 % less one point per 125 hosts, at least 5 %.
    pub percent: Option<u8>,
    /// Never fewer than this many hosts (all of them when fewer are feasible).
    pub floor: usize,
}

impl Default for Shortlist {
    fn default() -> Self {
        Self {
            percent: Some(SHORTLIST_PERCENT),
            floor: SHORTLIST_FLOOR,
        }
    }
}

impl Shortlist {
    /// Kubernetes' adaptive share with its floor of 100 (measured against the default in
    /// decision 0012: four times the cost at 1,000 hosts for a slightly closer choice).
    pub const KUBERNETES: Shortlist = Shortlist {
        percent: None,
        floor: SHORTLIST_FLOOR,
    };

    /// Ranks every feasible host, as before shortlists (for comparisons).
    pub const ALL: Shortlist = Shortlist {
        percent: Some(100),
        floor: usize::MAX,
    };

    /// How many of `feasible` hosts a ranking looks at.
    pub fn size(&self, feasible: usize) -> usize {
        if feasible <= self.floor {
            return feasible;
        }
        let percent = match self.percent {
            Some(p) => usize::from(p.clamp(1, 100)),
            None => 50usize
                .saturating_sub(feasible / 125)
                .max(ADAPTIVE_MIN_PERCENT),
        };
        // Rounded up, so that a share is never empty.
        (feasible * percent)
            .div_ceil(100)
            .max(self.floor)
            .min(feasible)
    }
}

/// The order in which one ranking visits `feasible` hosts: all of them, from `start` (taken
/// modulo their number) round to just before it. The ranking stops once it has enough.
pub fn visiting_order(feasible: usize, start: u64) -> impl Iterator<Item = usize> {
    let start = if feasible == 0 {
        0
    } else {
        (start % feasible as u64) as usize
    };
    (start..feasible).chain(0..start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_default_ranks_all_of_a_small_lattice_and_a_share_of_a_large_one() {
        let default = Shortlist::default();
        assert_eq!(default.size(0), 0);
        assert_eq!(default.size(100), 100);
        assert_eq!(default.size(1_000), 100);
        assert_eq!(default.size(10_000), 100);
        assert_eq!(default.size(50_000), 500);
        let kubernetes = Shortlist::KUBERNETES;
        // 50 − 1000/125 = 42 %.
        assert_eq!(kubernetes.size(1_000), 420);
        // 50 − 80 is below the minimum: 5 %.
        assert_eq!(kubernetes.size(10_000), 500);
        assert_eq!(kubernetes.size(200), 100); // 49 % is 98: the floor
        let fixed = Shortlist {
            percent: Some(10),
            floor: 50,
        };
        assert_eq!(fixed.size(10_000), 1_000);
        assert_eq!(fixed.size(300), 50);
        assert_eq!(Shortlist::ALL.size(10_000), 10_000);
    }

    #[test]
    fn the_visit_wraps_round_from_its_start() {
        assert_eq!(visiting_order(5, 7).collect::<Vec<_>>(), [2, 3, 4, 0, 1]);
        assert_eq!(visiting_order(0, 7).count(), 0);
    }

    proptest! {
        #[test]
        fn a_shortlist_is_never_empty_nor_beyond_the_feasible(
            feasible in 0usize..100_000,
            percent in prop::option::of(0u8..=255),
            floor in 0usize..1_000,
        ) {
            let size = Shortlist { percent, floor }.size(feasible);
            prop_assert!(size <= feasible);
            prop_assert!(feasible == 0 || size > 0);
            prop_assert!(size >= floor.min(feasible));
        }

        #[test]
        fn a_visit_sees_every_host_once(feasible in 0usize..500, start in any::<u64>()) {
            let mut seen: Vec<usize> = visiting_order(feasible, start).collect();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..feasible).collect::<Vec<_>>());
        }
    }
}
