//! Per-call cost of the built-in spreadscaler, compiled to wasm and run by the plugin runtime,
//! beside the same scaler logic compiled natively through the SDK, in the same run.
//!
//!     scripts/build-wasm.sh && cargo bench -p trellis-runtime --bench plugins
//!
//! Two cases per lattice size:
//! - steady: the component already runs where it should (10 instances on 10 hosts); the
//!   scaler reads its instances and answers "deployed". This is the common pass.
//! - scale-up: 10 more instances are wanted, so the scaler asks placement to rank every host.
//!
//! Both sides see the same lattice: the same hosts, and instances with the same image and the
//! same app annotation (the controller annotates what it starts). The wasm side's snapshot
//! also carries what contract 0.2.0 added to the view: every host's vitals (1 % of them
//! suspect) and the component's traffic on each host running it. `BENCH_PLUGIN=file.wasm`
//! measures another build of the spreadscaler (to compare SDK or build changes in one session).
//!
//! The "before" columns are the spreadscaler as built against contract 0.1.0
//! (`tests/fixtures/contract-0.1.0/spreadscaler.wasm`, served through the 0.1.0 imports),
//! on the same snapshot in the same turns: what the larger view and the second contract cost
//! a plugin call. `BENCH_BEFORE=other.wasm` compares another build; `BENCH_BEFORE=none` none.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use trellis_plugin_spreadscaler::SpreadScaler;
use trellis_runtime::bindings::{
    ComponentInstance, ComponentKind, ComponentSpec, HostInfo, Pair, ScalerContext,
};
use trellis_runtime::{Health, HostVitals, LatticeSnapshot, Runtime, RuntimeConfig, Traffic};
use trellis_sdk::testing::TestLattice;
use trellis_sdk::Scaler;

const APP: &str = "bench";
const COMPONENT: &str = "bench-web";
const IMAGE: &str = "file:///web.wasm";
const RUNNING_DEFAULT: usize = 10;

fn running() -> usize {
    std::env::var("BENCH_RUNNING")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RUNNING_DEFAULT)
}

fn host_id(i: usize) -> String {
    format!("host-{i:05}")
}

fn region(i: usize) -> &'static str {
    ["east", "west", "north", "south"][i % 4]
}

fn wasm_snapshot(hosts: usize) -> Arc<LatticeSnapshot> {
    let mut snap = LatticeSnapshot::of_hosts((0..hosts).map(|i| HostInfo {
        id: host_id(i),
        friendly_name: host_id(i),
        labels: vec![Pair {
            key: "region".into(),
            value: region(i).into(),
        }],
        uptime_seconds: 60,
    }));
    let instances = (0..running().min(hosts)).map(|i| ComponentInstance {
        host_id: host_id(i),
        component_id: COMPONENT.into(),
        image: IMAGE.into(),
        count: 1,
        annotations: vec![Pair {
            key: trellis_sdk::diff::APP_ANNOTATION.into(),
            value: APP.into(),
        }],
    });
    for instance in instances {
        snap.put_component(instance);
    }
    for i in 0..hosts {
        let health = if i % 100 == 99 {
            Health::Suspect
        } else {
            Health::Healthy
        };
        snap.vitals.set_host(
            &host_id(i),
            HostVitals {
                health,
                reported: true,
                cpus: 4,
                cpu_use: 0.3,
                process_cpu_use: 0.05,
                memory_total_bytes: 8 << 30,
                memory_available_bytes: 5 << 30,
            },
        );
    }
    for i in 0..running().min(hosts) {
        let traffic = Traffic {
            host_id: host_id(i),
            in_flight: 1,
            requests_per_second: 20.0,
            p50_ms: 2.0,
            p99_ms: 9.0,
            error_rate: 0.0,
            window_seconds: 10,
        };
        snap.vitals.add_traffic(COMPONENT, traffic);
    }
    Arc::new(snap)
}

fn native_lattice(hosts: usize) -> TestLattice {
    let mut lattice = TestLattice::new().for_app(APP);
    for i in 0..hosts {
        lattice = lattice.with_host_info(trellis_sdk::Host {
            id: host_id(i),
            friendly_name: host_id(i),
            labels: trellis_sdk::label_map(&[("region", region(i))]),
            uptime_seconds: 60,
        });
    }
    for i in 0..running().min(hosts) {
        lattice = lattice.with_component_instance(trellis_sdk::ComponentInstance {
            host_id: host_id(i),
            component_id: COMPONENT.into(),
            image: IMAGE.into(),
            count: 1,
            annotations: trellis_sdk::label_map(&[(trellis_sdk::diff::APP_ANNOTATION, APP)]),
        });
    }
    lattice
}

fn wasm_ctx(instances: usize) -> ScalerContext {
    let component = ComponentSpec {
        name: "web".into(),
        kind: ComponentKind::Component,
        image: IMAGE.into(),
        id: COMPONENT.into(),
        config: vec![],
    };
    ScalerContext {
        app: APP.into(),
        version: "v1".into(),
        component: component.clone(),
        components: vec![component],
        trait_type: "spreadscaler".into(),
        properties: format!("{{\"instances\": {instances}}}"),
        memo: None,
    }
}

fn native_ctx(instances: usize) -> trellis_sdk::ScalerContext {
    let component = trellis_sdk::ComponentSpec {
        name: "web".into(),
        kind: trellis_sdk::ComponentKind::Component,
        image: IMAGE.into(),
        id: COMPONENT.into(),
        config: vec![],
    };
    trellis_sdk::ScalerContext {
        app: APP.into(),
        version: "v1".into(),
        component: component.clone(),
        components: vec![component],
        trait_type: "spreadscaler".into(),
        properties: format!("{{\"instances\": {instances}}}"),
        memo: None,
    }
}

/// Time of one call of `f`: the median of single calls (at least 5), after a warm-up, over at
/// least `budget`. The median, not the mean, because this machine is shared: a call that another
/// process preempts takes many times longer, and a few of those move a mean by more than the
/// differences being measured. With `BENCH_ITERS=n`, exactly n calls (for `perf`).
fn time_per_call(budget: Duration, mut f: impl FnMut()) -> Duration {
    for _ in 0..3 {
        f();
    }
    let exact = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    let mut times = Vec::new();
    let started = Instant::now();
    loop {
        let call = Instant::now();
        f();
        times.push(call.elapsed());
        let done = match exact {
            Some(n) => times.len() >= n.max(1),
            None => started.elapsed() >= budget && times.len() >= 5,
        };
        if done {
            break;
        }
    }
    times.sort_unstable();
    times[times.len() / 2]
}

fn micros(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

/// A runtime whose plugin folder holds one spreadscaler build.
fn runtime_with(plugin: &Path) -> (tempfile::TempDir, Runtime) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(plugin, dir.path().join("spreadscaler.wasm")).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run scripts/build-wasm.sh first)",
            plugin.display()
        )
    });
    let runtime = Runtime::new(RuntimeConfig {
        plugin_dir: dir.path().to_path_buf(),
        // A 10,000-host scale-up takes milliseconds, more on a busy machine: the default 50 ms
        // deadline is for production passes, not for measuring.
        default_limits: trellis_runtime::Limits {
            deadline: Duration::from_secs(2),
            ..Default::default()
        },
        ..Default::default()
    })
    .expect("runtime");
    runtime.reload();
    (dir, runtime)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The contenders of one table cell, measured in turns: each round times every contender for
/// a slice of the budget. On this shared machine speed drifts by up to 2x over seconds (other
/// builds and tests come and go); in turns, all contenders see the same drift, and the ratio
/// is taken per round, then the median over rounds.
struct Turns<'a> {
    contenders: Vec<Box<dyn FnMut() + 'a>>,
}

impl<'a> Turns<'a> {
    fn new() -> Self {
        Self {
            contenders: Vec::new(),
        }
    }

    fn add(mut self, f: impl FnMut() + 'a) -> Self {
        self.contenders.push(Box::new(f));
        self
    }

    /// Per contender: the median over rounds of its per-round time; and per round, each
    /// contender's time divided by the first one's (median over rounds).
    fn run(mut self, budget: Duration, rounds: u32) -> (Vec<Duration>, Vec<f64>) {
        let slice = budget / rounds.max(1);
        let n = self.contenders.len();
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); n];
        for _ in 0..rounds.max(1) {
            let round: Vec<f64> = self
                .contenders
                .iter_mut()
                .map(|f| time_per_call(slice, f).as_secs_f64())
                .collect();
            for i in 0..n {
                times[i].push(round[i]);
                ratios[i].push(round[i] / round[0]);
            }
        }
        (
            times
                .iter_mut()
                .map(|t| Duration::from_secs_f64(median(t)))
                .collect(),
            ratios.iter_mut().map(|r| median(r)).collect(),
        )
    }
}

fn main() {
    let plugin = std::env::var_os("BENCH_PLUGIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../build/plugins/spreadscaler.wasm")
        });
    let (_dir, runtime) = runtime_with(&plugin);
    let plugins = runtime.plugins();
    let scaler = plugins
        .scaler_for("spreadscaler")
        .expect("spreadscaler loaded");
    // BENCH_BEFORE=old.wasm: another build of the spreadscaler, measured in the same turns (its
    // own runtime, so a second engine: a measuring convenience, not how trellis runs).
    let before_file = match std::env::var_os("BENCH_BEFORE") {
        Some(p) if p == "none" => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/contract-0.1.0/spreadscaler.wasm"),
        ),
    };
    let before = before_file.map(|p| runtime_with(&p));
    let before_plugins = before.as_ref().map(|(_, r)| r.plugins());
    let before_scaler = before_plugins.as_ref().map(|p| {
        p.scaler_for("spreadscaler")
            .expect("before: spreadscaler loaded")
    });
    let budget = Duration::from_millis(
        std::env::var("BENCH_MILLIS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1400),
    );
    let rounds: u32 = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);

    let mut turns = Turns::new().add(|| {
        black_box(scaler.describe().expect("describe"));
    });
    if let Some(old) = &before_scaler {
        turns = turns.add(move || {
            black_box(old.describe().expect("describe"));
        });
    }
    let (describe, _) = turns.run(budget, rounds);
    print!(
        "fixed cost of one call (fresh store + instance + describe()): {} µs",
        micros(describe[0])
    );
    match describe.get(1) {
        Some(old) => println!(" (before: {} µs)\n", micros(*old)),
        None => println!("\n"),
    }
    // For profiling the fixed cost alone: BENCH_FIXED_ONLY=1 perf record …
    if std::env::var_os("BENCH_FIXED_ONLY").is_some() {
        return;
    }
    println!("spreadscaler, one reconcile call (µs, median over {rounds} rounds of turns)");
    if before_scaler.is_some() {
        println!("| hosts  | case     | native µs | wasm µs | wasm/native | before µs | before/native | commands |");
        println!("|-------:|----------|----------:|--------:|------------:|----------:|--------------:|---------:|");
    } else {
        println!("| hosts  | case     | native µs | wasm µs | wasm/native | commands |");
        println!("|-------:|----------|----------:|--------:|------------:|---------:|");
    }
    // BENCH_HOSTS=1000 BENCH_CASE=steady narrow the table (for profiling one case).
    let only_hosts: Option<usize> = std::env::var("BENCH_HOSTS")
        .ok()
        .and_then(|v| v.parse().ok());
    let only_case = std::env::var("BENCH_CASE").ok();
    for hosts in [10usize, 100, 1_000, 10_000] {
        if only_hosts.is_some_and(|h| h != hosts) {
            continue;
        }
        let snapshot = wasm_snapshot(hosts);
        // The native side ranks as many hosts per call as the runtime's shortlist does.
        let lattice =
            native_lattice(hosts).with_shortlist(plugins.placements.shortlist.size(hosts));
        for (case, instances) in [
            ("steady", running().min(hosts)),
            ("scale-up", running().min(hosts) + 10),
        ] {
            if only_case.as_deref().is_some_and(|c| c != case) {
                continue;
            }
            let ctx = wasm_ctx(instances);
            let nctx = native_ctx(instances);
            let wasm_result = scaler
                .reconcile(&ctx, &snapshot, plugins.placements.clone())
                .expect("wasm call");
            let native_result = SpreadScaler::reconcile(&nctx, &lattice);
            assert_eq!(
                wasm_result.commands.len(),
                native_result.commands.len(),
                "wasm and native decide alike"
            );
            let mut turns = Turns::new()
                .add(|| {
                    black_box(SpreadScaler::reconcile(black_box(&nctx), &lattice));
                })
                .add(|| {
                    black_box(
                        scaler
                            .reconcile(black_box(&ctx), &snapshot, plugins.placements.clone())
                            .expect("wasm call"),
                    );
                });
            if let (Some(old), Some(old_plugins)) = (&before_scaler, &before_plugins) {
                turns = turns.add(|| {
                    black_box(
                        old.reconcile(black_box(&ctx), &snapshot, old_plugins.placements.clone())
                            .expect("before: wasm call"),
                    );
                });
            }
            let (times, ratios) = turns.run(budget, rounds);
            print!(
                "| {hosts:>6} | {case:<8} | {:>9} | {:>7} | {:>11.2} |",
                micros(times[0]),
                micros(times[1]),
                ratios[1],
            );
            if let (Some(old), Some(ratio)) = (times.get(2), ratios.get(2)) {
                print!(" {:>9} | {:>13.2} |", micros(*old), ratio);
            }
            println!(" {:>8} |", wasm_result.commands.len());
        }
    }
}
