//! The built-in load-aware placement policy, `load-aware`: one more instance goes where there
//! is most room, as the hosts report it (contract 0.2.0's `host-vitals`). Apps opt in with the
//! annotation `trellis.dev/placement: load-aware`, or an operator makes it everyone's with
//! `[placement] default_policy = "load-aware"`. It ranks beside the default placement, whose
//! spreading of a component still counts.
//!
//! - Filter: a host reporting less free memory than [`MIN_FREE_MEMORY`] takes nothing more.
//! - Score, in points (the controller normalises them over the candidates):
//!   - machine CPU free: up to [`CPU_POINTS`] (`1 − cpu-use`);
//!   - the host's own process idle: up to [`OWN_CPU_POINTS`] (`1 − process-cpu-use`), which
//!     tells apart hosts that share a machine, where the machine's figure is the same for all;
//!   - memory free: up to [`MEMORY_POINTS`] (share of the total);
//!   - less [`INSTANCE_POINTS`] per instance running there;
//!   - less [`SUSPECT_POINTS`] for a suspect host (the controller already ranks them last).
//!
//!   A host that reports nothing (a wasmCloud host) scores as half used, so it is neither
//!   preferred nor shunned for want of figures.

use trellis_sdk::{
    Health, Host, HostScore, HostVitals, Lattice, Placement, PlacementRequest, PluginInfo, Verdict,
};

/// Free memory under which a host takes no more instances: a component instance with its
/// runtime takes a few MiB to tens of MiB, and a machine this low is about to swap or kill.
pub const MIN_FREE_MEMORY: u64 = 64 << 20;

pub const CPU_POINTS: f64 = 1000.0;
pub const OWN_CPU_POINTS: f64 = 1000.0;
pub const MEMORY_POINTS: f64 = 500.0;
pub const INSTANCE_POINTS: i64 = 10;
pub const SUSPECT_POINTS: i64 = 2000;

pub struct LoadAware;

impl Placement for LoadAware {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "load-aware".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            trait_types: vec!["load-aware".into()],
            description: "Placement policy: most free CPU and memory, least own work, healthy \
                          hosts; opt in per app or as the default"
                .into(),
        }
    }

    fn filter(
        _request: &PlacementRequest,
        candidates: &[Host],
        lattice: &dyn Lattice,
    ) -> Vec<Verdict> {
        vitals_of(candidates, lattice)
            .into_iter()
            .zip(candidates)
            .map(|(vitals, host)| match vitals {
                Some(v) if v.reported && v.memory_available_bytes < MIN_FREE_MEMORY => {
                    Verdict::refused(
                        &host.id,
                        format!(
                            "has {} MiB of memory free, under the {} MiB a new instance needs",
                            v.memory_available_bytes >> 20,
                            MIN_FREE_MEMORY >> 20
                        ),
                    )
                }
                _ => Verdict::fits(&host.id),
            })
            .collect()
    }

    fn score(
        _request: &PlacementRequest,
        candidates: &[Host],
        lattice: &dyn Lattice,
    ) -> Vec<HostScore> {
        vitals_of(candidates, lattice)
            .into_iter()
            .zip(candidates)
            .map(|(vitals, host)| HostScore {
                host_id: host.id.clone(),
                value: vitals.map_or(0, |v| points(&v)),
            })
            .collect()
    }
}

/// The candidates' vitals, by position, in one call.
fn vitals_of(candidates: &[Host], lattice: &dyn Lattice) -> Vec<Option<HostVitals>> {
    let ids: Vec<String> = candidates.iter().map(|h| h.id.clone()).collect();
    lattice.host_vitals(&ids)
}

/// A host's room, in points (see the crate's documentation).
pub fn points(v: &HostVitals) -> i64 {
    let share = |x: f64| {
        if x.is_finite() {
            x.clamp(0.0, 1.0)
        } else {
            0.5
        }
    };
    let (cpu, own, memory) = if v.reported {
        let memory = if v.memory_total_bytes > 0 {
            v.memory_available_bytes as f64 / v.memory_total_bytes as f64
        } else {
            0.5
        };
        (share(v.cpu_use), share(v.process_cpu_use), share(memory))
    } else {
        (0.5, 0.5, 0.5)
    };
    let room = CPU_POINTS * (1.0 - cpu) + OWN_CPU_POINTS * (1.0 - own) + MEMORY_POINTS * memory;
    let instances = i64::try_from(v.instances).unwrap_or(i64::MAX / INSTANCE_POINTS);
    let suspect = if v.health == Health::Suspect {
        SUSPECT_POINTS
    } else {
        0
    };
    (room as i64)
        .saturating_sub(instances.saturating_mul(INSTANCE_POINTS))
        .saturating_sub(suspect)
}

trellis_sdk::export_placement!(LoadAware);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use trellis_sdk::testing::{rank_with, TestLattice};
    use trellis_sdk::{label_map, Lattice};

    use super::*;

    const GIB: u64 = 1 << 30;

    fn request() -> PlacementRequest {
        PlacementRequest {
            component_id: "shop-web".into(),
            requirements: label_map::<&str, &str>(&[]),
        }
    }

    fn three_hosts() -> TestLattice {
        TestLattice::new()
            .with_host("a", &[])
            .with_host("b", &[])
            .with_host("c", &[])
    }

    #[test]
    fn a_busy_host_comes_last() {
        // One machine for all three (same machine CPU); a's own process is busy.
        let lattice = three_hosts()
            .with_vitals(HostVitals {
                process_cpu_use: 0.45,
                ..HostVitals::reporting("a", 2, 0.5, 8 * GIB, 4 * GIB)
            })
            .with_vitals(HostVitals {
                process_cpu_use: 0.02,
                ..HostVitals::reporting("b", 2, 0.5, 8 * GIB, 4 * GIB)
            })
            .with_vitals(HostVitals {
                process_cpu_use: 0.03,
                ..HostVitals::reporting("c", 2, 0.5, 8 * GIB, 4 * GIB)
            });
        assert_eq!(
            rank_with::<LoadAware>(&lattice, &request()),
            ["b", "c", "a"]
        );
    }

    #[test]
    fn free_cpu_and_memory_win_and_instances_count() {
        let lattice = three_hosts()
            .with_vitals(HostVitals::reporting("a", 4, 0.9, 8 * GIB, 4 * GIB))
            .with_vitals(HostVitals::reporting("b", 4, 0.1, 8 * GIB, GIB))
            .with_vitals(HostVitals::reporting("c", 4, 0.1, 8 * GIB, 6 * GIB));
        assert_eq!(
            rank_with::<LoadAware>(&lattice, &request()),
            ["c", "b", "a"]
        );
        // Equal figures: fewer instances first.
        let even = three_hosts()
            .with_component("a", "other", 5)
            .with_component("b", "other", 1);
        let scores = LoadAware::score(&request(), &even.hosts(), &even);
        assert!(
            scores[2].value > scores[1].value && scores[1].value > scores[0].value,
            "{scores:?}"
        );
    }

    #[test]
    fn a_host_short_of_memory_takes_nothing() {
        let lattice = three_hosts()
            .with_vitals(HostVitals::reporting("a", 2, 0.1, 8 * GIB, 10 << 20))
            .with_vitals(HostVitals::reporting("b", 2, 0.1, 8 * GIB, 2 * GIB));
        let verdicts = LoadAware::filter(&request(), &lattice.hosts(), &lattice);
        assert!(!verdicts[0].fits);
        assert!(
            verdicts[0].reason.contains("10 MiB"),
            "{}",
            verdicts[0].reason
        );
        assert!(
            verdicts[1].fits && verdicts[2].fits,
            "unreported c fits too"
        );
        assert_eq!(rank_with::<LoadAware>(&lattice, &request()), ["b", "c"]);
    }

    #[test]
    fn suspect_and_unreported_hosts() {
        let lattice = three_hosts()
            .with_vitals(HostVitals::reporting("a", 2, 0.2, 8 * GIB, 4 * GIB))
            .with_health("a", Health::Suspect)
            .with_vitals(HostVitals::reporting("b", 2, 0.2, 8 * GIB, 4 * GIB));
        let scores = LoadAware::score(&request(), &lattice.hosts(), &lattice);
        let (a, b, c) = (scores[0].value, scores[1].value, scores[2].value);
        assert!(
            b > c && c > a,
            "healthy reporting > unreported > suspect: {scores:?}"
        );
    }

    proptest! {
        /// Whatever a host reports (NaN, negative, huge), points are finite and ordered by
        /// free CPU when all else is equal.
        #[test]
        fn any_report_scores(cpu in any::<f64>(), own in any::<f64>(), total in any::<u64>(), free in any::<u64>(), instances in any::<u64>()) {
            let v = HostVitals {
                process_cpu_use: own,
                instances,
                ..HostVitals::reporting("h", 2, cpu, total, free)
            };
            let _ = points(&v);
            let idle = HostVitals { cpu_use: 0.0, ..v.clone() };
            let busy = HostVitals { cpu_use: 1.0, ..v };
            prop_assert!(points(&idle) >= points(&busy));
        }
    }
}
