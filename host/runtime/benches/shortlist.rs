//! What a placement shortlist trades: the cost of a ranking against how good its choice is.
//!
//! A lattice of N hosts whose loads are uneven (a few busy hosts, many idle or lightly loaded,
//! as after earlier deploys and failures); 1,000 single-instance apps placed one after the
//! other, each on the first host of a ranking by the built default placement plugin (wasm),
//! the lattice updated after each. For each shortlist setting, in the same run (the first row,
//! every host ranked, is the baseline):
//!
//! - the wasm cost of one ranking (median);
//! - how much busier the chosen host was than the idlest feasible host at that moment (0 when
//!   the choice is as good as ranking every host): mean and worst;
//! - the most and fewest instances on a host afterwards.
//!
//! Run: `scripts/build-wasm.sh`, then `cargo bench -p trellis-runtime --bench shortlist`
//! (`TRELLIS_BENCH_HOSTS=1000,10000` to choose the sizes).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use trellis_runtime::bindings::{ComponentInstance, HostInfo, Pair, PlacementRequest};
use trellis_runtime::placement::rank;
use trellis_runtime::{LatticeSnapshot, Limits, Placements, Runtime, RuntimeConfig, Shortlist};

const PLACEMENTS: usize = 1_000;

fn settings() -> Vec<(&'static str, Shortlist)> {
    let fixed = |percent, floor| Shortlist {
        percent: Some(percent),
        floor,
    };
    vec![
        ("every host", Shortlist::ALL),
        (
            "Kubernetes' adaptive share, floor 100",
            Shortlist::KUBERNETES,
        ),
        ("10 %, floor 100", fixed(10, 100)),
        ("5 %, floor 50", fixed(5, 50)),
        ("1 %, floor 100 (the default)", Shortlist::default()),
        ("1 %, floor 20", fixed(1, 20)),
    ]
}

/// A reproducible uneven load: most hosts idle or nearly, one in ten busy, one in a hundred
/// very busy (xorshift, so every setting sees the same lattice).
fn initial_loads(hosts: usize) -> Vec<u32> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..hosts)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 100 {
                0 => 20 + (x >> 8) as u32 % 20,
                1..=10 => 5 + (x >> 8) as u32 % 5,
                11..=40 => 1,
                _ => 0,
            }
        })
        .collect()
}

fn host_id(i: usize) -> String {
    format!("host-{i:05}")
}

struct Outcome {
    ranking: Duration,
    mean_excess: f64,
    worst_excess: u32,
    most: u32,
    fewest: u32,
}

fn place(placements: &Placements, hosts: usize) -> Outcome {
    let mut loads = initial_loads(hosts);
    let mut snapshot = LatticeSnapshot::of_hosts((0..hosts).map(|i| HostInfo {
        id: host_id(i),
        friendly_name: host_id(i),
        labels: vec![Pair {
            key: "zone".into(),
            value: "a".into(),
        }],
        uptime_seconds: 60,
    }));
    for (i, &load) in loads.iter().enumerate() {
        if load > 0 {
            snapshot.put_component(ComponentInstance {
                host_id: host_id(i),
                component_id: format!("earlier-{i}"),
                image: "x".into(),
                count: load,
                annotations: vec![],
            });
        }
    }
    let mut snapshot = Arc::new(snapshot);
    let mut times = Vec::with_capacity(PLACEMENTS);
    let (mut excess_sum, mut worst_excess) = (0u64, 0u32);
    for app in 0..PLACEMENTS {
        let request = PlacementRequest {
            component_id: format!("app{app}-web"),
            requirements: vec![Pair {
                key: "zone".into(),
                value: "a".into(),
            }],
        };
        let started = Instant::now();
        let ranked = rank(placements, &snapshot, &request).expect("a ranking");
        times.push(started.elapsed());
        let chosen: usize = ranked[0]["host-".len()..].parse().expect("a host index");
        let idlest = loads.iter().copied().min().unwrap_or(0);
        let excess = loads[chosen] - idlest;
        excess_sum += u64::from(excess);
        worst_excess = worst_excess.max(excess);
        loads[chosen] += 1;
        Arc::make_mut(&mut snapshot).put_component(ComponentInstance {
            host_id: host_id(chosen),
            component_id: request.component_id,
            image: "x".into(),
            count: 1,
            annotations: vec![],
        });
    }
    times.sort();
    Outcome {
        ranking: times[times.len() / 2],
        mean_excess: excess_sum as f64 / PLACEMENTS as f64,
        worst_excess,
        most: loads.iter().copied().max().unwrap_or(0),
        fewest: loads.iter().copied().min().unwrap_or(0),
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "shortlist benchmark: run with `cargo bench -p trellis-runtime --bench shortlist`"
        );
        return;
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../build/plugins/placement.wasm");
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::copy(&built, dir.path().join("placement.wasm"))
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/build-wasm.sh first)", built.display()));
    let runtime = Runtime::new(RuntimeConfig {
        plugin_dir: dir.path().to_path_buf(),
        // Ranking every host of 10,000 takes tens of milliseconds: the baseline must finish.
        default_limits: Limits {
            deadline: Duration::from_secs(2),
            ..Limits::default()
        },
        ..RuntimeConfig::default()
    })
    .expect("a runtime");
    runtime.reload();
    let plugins = runtime.plugins().placements.plugins.clone();
    assert_eq!(plugins.len(), 1, "the placement plugin did not load");
    let sizes: Vec<usize> = std::env::var("TRELLIS_BENCH_HOSTS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("a host count"))
        .collect();
    println!("{PLACEMENTS} single-instance apps placed one after the other on an unevenly loaded lattice, default placement plugin (wasm)");
    println!("| hosts | shortlist | hosts ranked | one ranking (median) | chosen host busier than the idlest: mean / worst | instances per host after: most / fewest |");
    println!("|---:|---|---:|---:|---|---|");
    for hosts in sizes {
        for (name, shortlist) in settings() {
            let placements = Placements {
                plugins: plugins.clone(),
                shortlist,
            };
            let outcome = place(&placements, hosts);
            println!(
                "| {hosts} | {name} | {} | {:.0} µs | {:.2} / {} | {} / {} |",
                shortlist.size(hosts),
                outcome.ranking.as_secs_f64() * 1e6,
                outcome.mean_excess,
                outcome.worst_excess,
                outcome.most,
                outcome.fewest
            );
        }
    }
}
