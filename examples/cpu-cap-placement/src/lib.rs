//! An example placement policy, `cpu-cap`, for lattices of small devices: no new instance on a
//! host whose CPU is in use past [`CPU_CAP`], and of the others, hosts where the component
//! already struggles (slow or failing answers) last, then the most free CPU first.

use trellis_sdk::{
    Host, HostScore, HostVitals, Lattice, Placement, PlacementRequest, PluginInfo, Traffic, Verdict,
};

/// The machine CPU use past which a host takes no new instance.
pub const CPU_CAP: f64 = 0.8;

/// A p99 past which a host's instances of the component count as struggling.
pub const SLOW_P99_MS: f64 = 250.0;

/// An error rate past which a host's instances of the component count as struggling.
pub const FAILING_ERROR_RATE: f64 = 0.05;

pub struct CpuCap;

impl Placement for CpuCap {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "cpu-cap".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            trait_types: vec!["cpu-cap".into()],
            description: "Example policy: no new work past 80 % CPU; away from hosts where \
                          the component answers slowly or fails"
                .into(),
        }
    }

    fn filter(_: &PlacementRequest, candidates: &[Host], lattice: &dyn Lattice) -> Vec<Verdict> {
        vitals(candidates, lattice)
            .into_iter()
            .zip(candidates)
            .map(|(v, host)| match v {
                Some(v) if v.reported && v.cpu_use > CPU_CAP => Verdict::refused(
                    &host.id,
                    format!(
                        "CPU {:.0} % in use, past the cap of {:.0} %",
                        v.cpu_use * 100.0,
                        CPU_CAP * 100.0
                    ),
                ),
                _ => Verdict::fits(&host.id),
            })
            .collect()
    }

    fn score(
        request: &PlacementRequest,
        candidates: &[Host],
        lattice: &dyn Lattice,
    ) -> Vec<HostScore> {
        let traffic = lattice.component_traffic(&request.component_id);
        vitals(candidates, lattice)
            .into_iter()
            .zip(candidates)
            .map(|(v, host)| {
                let free = v
                    .as_ref()
                    .filter(|v| v.reported)
                    .map_or(0.5, |v| 1.0 - v.cpu_use);
                let struggling = traffic.iter().any(|t| t.host_id == host.id && struggles(t));
                let value =
                    (free.clamp(0.0, 1.0) * 1000.0) as i64 - if struggling { 2000 } else { 0 };
                HostScore {
                    host_id: host.id.clone(),
                    value,
                }
            })
            .collect()
    }
}

fn struggles(t: &Traffic) -> bool {
    t.p99_ms > SLOW_P99_MS || t.error_rate > FAILING_ERROR_RATE
}

fn vitals(candidates: &[Host], lattice: &dyn Lattice) -> Vec<Option<HostVitals>> {
    let ids: Vec<String> = candidates.iter().map(|h| h.id.clone()).collect();
    lattice.host_vitals(&ids)
}

trellis_sdk::export_placement!(CpuCap);

#[cfg(test)]
mod tests {
    use trellis_sdk::testing::{rank_with, TestLattice};
    use trellis_sdk::{label_map, Health};

    use super::*;

    const GIB: u64 = 1 << 30;

    fn request() -> PlacementRequest {
        PlacementRequest {
            component_id: "plant-sensor".into(),
            requirements: label_map::<&str, &str>(&[]),
        }
    }

    fn boards() -> TestLattice {
        TestLattice::new()
            .with_host("board-1", &[])
            .with_host("board-2", &[])
            .with_host("board-3", &[])
            .with_vitals(HostVitals::reporting("board-1", 4, 0.95, 2 * GIB, GIB))
            .with_vitals(HostVitals::reporting("board-2", 4, 0.40, 2 * GIB, GIB))
            .with_vitals(HostVitals::reporting("board-3", 4, 0.10, 2 * GIB, GIB))
    }

    #[test]
    fn a_board_past_the_cap_takes_nothing_and_free_cpu_wins() {
        assert_eq!(
            rank_with::<CpuCap>(&boards(), &request()),
            ["board-3", "board-2"]
        );
        let verdicts = CpuCap::filter(&request(), &boards().hosts(), &boards());
        assert!(
            verdicts[0].reason.contains("95 %"),
            "{}",
            verdicts[0].reason
        );
    }

    #[test]
    fn a_board_where_the_component_struggles_comes_last() {
        let slow = Traffic {
            p99_ms: 900.0,
            ..Traffic::on("board-3", 12.0, 3)
        };
        let lattice = boards().with_traffic("plant-sensor", slow);
        assert_eq!(
            rank_with::<CpuCap>(&lattice, &request()),
            ["board-2", "board-3"]
        );
        let failing = Traffic {
            error_rate: 0.2,
            ..Traffic::on("board-2", 12.0, 1)
        };
        let lattice = boards().with_traffic("plant-sensor", failing);
        assert_eq!(
            rank_with::<CpuCap>(&lattice, &request()),
            ["board-3", "board-2"]
        );
    }

    #[test]
    fn suspect_boards_come_last_as_the_controller_ranks_them() {
        // The controller keeps new work off suspect hosts whatever the plugins say;
        // TestLattice's ranking does the same, so the policy is tested as it will run.
        let lattice = boards().with_health("board-3", Health::Suspect);
        assert_eq!(rank_with::<CpuCap>(&lattice, &request())[0], "board-2");
    }
}
