//! The controller at scale, on simulated lattices (`trellis-sim`): hosts × apps of one
//! component each, spread over 3 hosts by the built-in spreadscaler.
//!
//! For each size it measures, with a real nats-server (JetStream) and the controller in a
//! child process of its own (so that its CPU time and peak memory, from `getrusage`, are the
//! controller's alone; the simulated hosts and this driver run in the parent):
//!
//! - deploy → deployed: from an app's deploy request to its first `deployed` status on
//!   `wadm.status.{lattice}.{app}` (all apps deployed at once: p50, p99, max);
//! - commands issued vs the minimum (one component.scale per host an app needs);
//! - controller CPU time (user + system) and peak RSS over the whole run;
//! - host failure → replacement: the busiest host is killed (no goodbye); the time until every
//!   app runs its instances on live hosts again (missed heartbeats, then a pass).
//!
//! Sizes: `TRELLIS_BENCH_SIZES=HOSTSxAPPS,…` (default `100x100,1000x500,10000x1000`).
//! Run: `scripts/build-wasm.sh` once, then
//! `cargo bench -p trellis-controller --bench scale`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use trellis_bus::nats_server::NatsServer;
use trellis_controller::{cost, Controller, ControllerConfig, LoopSettings};
use trellis_lattice::api::{
    DeployModelResponse, DeployResult, PutModelResponse, Status, StatusType, Subjects,
};
use trellis_runtime::{Limits, RuntimeConfig, Shortlist};
use trellis_sim::{SimConfig, SimLattice};

const LATTICE: &str = "bench";
/// Instances per app (each on its own host).
const INSTANCES: usize = 3;
const HEARTBEAT: Duration = Duration::from_secs(2);
const HOST_TIMEOUT: Duration = Duration::from_secs(6);
const ROLE: &str = "TRELLIS_BENCH_ROLE";

fn main() -> anyhow::Result<()> {
    if std::env::var(ROLE).as_deref() == Ok("controller") {
        return controller_child();
    }
    // `cargo bench` passes `--bench`; a plain `cargo test --benches` run passes nothing and
    // should not take minutes.
    if !std::env::args().any(|a| a == "--bench") {
        println!("scale benchmark: run with `cargo bench -p trellis-controller --bench scale`");
        return Ok(());
    }
    let sizes = std::env::var("TRELLIS_BENCH_SIZES")
        .unwrap_or_else(|_| "100x100,1000x500,10000x1000".into());
    let sizes: Vec<(usize, usize)> = sizes
        .split(',')
        .map(|s| {
            let (h, a) = s.trim().split_once('x').unwrap_or_else(|| {
                panic!("TRELLIS_BENCH_SIZES: `{s}` is not HOSTSxAPPS (e.g. 1000x500)")
            });
            (
                h.parse().expect("a host count"),
                a.parse().expect("an app count"),
            )
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for (hosts, apps) in sizes {
        eprintln!("== {hosts} hosts, {apps} apps");
        let row = runtime.block_on(run(hosts, apps))?;
        eprintln!("{row:?}");
        rows.push(row);
    }
    print_table(&rows);
    print_breakdown(&rows);
    Ok(())
}

#[derive(Debug)]
struct Row {
    hosts: usize,
    apps: usize,
    all_deployed: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
    issued: u64,
    minimum: u64,
    cpu: Duration,
    peak_rss_mib: f64,
    replacement: Option<Duration>,
    replaced_instances: u32,
    /// Instances on the busiest and the idlest host once all are deployed.
    most: u32,
    fewest: u32,
    /// The controller's CPU by kind of work (`trellis_controller::cost`), seconds.
    work: Vec<(String, f64)>,
    /// The last resync pass that found nothing to do: apps, and its wall, CPU, snapshot,
    /// plugin and command milliseconds.
    resync: Option<(u64, [f64; 5])>,
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{INSTANCES} instances per app; heartbeats every {HEARTBEAT:?}, host timeout {HOST_TIMEOUT:?}; plugin deadline {:?}; shortlist {:?}",
        plugin_deadline(),
        shortlist()
    );
    println!("| hosts | apps | all deployed | deploy→deployed p50 / p99 / max | commands issued / minimum | instances per host: most / fewest (even) | controller CPU | controller peak RSS | host failure → replaced |");
    println!("|---:|---:|---:|---|---|---|---:|---:|---|");
    for r in rows {
        let replaced = match r.replacement {
            Some(t) => format!(
                "{:.2} s ({} instances)",
                t.as_secs_f64(),
                r.replaced_instances
            ),
            None => "not within 60 s".into(),
        };
        // The most even spread possible: every host within one instance of the others.
        let instances = r.apps * INSTANCES.min(r.hosts);
        let even = match (instances / r.hosts, instances.div_ceil(r.hosts)) {
            (lo, hi) if lo == hi => format!("{lo}"),
            (lo, hi) => format!("{hi}–{lo}"),
        };
        println!(
            "| {} | {} | {:.2} s | {} / {} / {} ms | {} / {} ({:.2}×) | {} / {} ({even}) | {:.2} s | {:.0} MiB | {} |",
            r.hosts,
            r.apps,
            r.all_deployed.as_secs_f64(),
            r.p50.as_millis(),
            r.p99.as_millis(),
            r.max.as_millis(),
            r.issued,
            r.minimum,
            r.issued as f64 / r.minimum.max(1) as f64,
            r.most,
            r.fewest,
            r.cpu.as_secs_f64(),
            r.peak_rss_mib,
            replaced
        );
    }
}

/// Where the controller's CPU went, and what a resync of settled apps costs.
fn print_breakdown(rows: &[Row]) {
    println!();
    println!("Controller CPU by kind of work (thread CPU time; the rest is the NATS client, the API and the runtime's threads), and the last resync pass that found nothing to do:");
    let kinds: Vec<&str> = rows
        .first()
        .map(|r| r.work.iter().map(|(k, _)| k.as_str()).collect())
        .unwrap_or_default();
    let header: String = kinds.iter().map(|k| format!(" {k} |")).collect();
    println!("| hosts | apps | total |{header} rest | resync of settled apps: wall / CPU (snapshot + plugins + commands) |");
    println!("|---:|---:|---:|{}---:|---|", "---:|".repeat(kinds.len()));
    for r in rows {
        let counted: f64 = r.work.iter().map(|(_, s)| s).sum();
        let cells: String = r.work.iter().map(|(_, s)| format!(" {s:.2} s |")).collect();
        let resync = match r.resync {
            Some((apps, [wall, cpu, snapshot, plugins, commands])) => format!(
                "{apps} apps: {wall:.1} ms / {cpu:.1} ms ({snapshot:.1} + {plugins:.1} + {commands:.1})"
            ),
            None => "none seen".into(),
        };
        println!(
            "| {} | {} | {:.2} s |{cells} {:.2} s | {resync} |",
            r.hosts,
            r.apps,
            r.cpu.as_secs_f64(),
            (r.cpu.as_secs_f64() - counted).max(0.0),
        );
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn manifest(app: usize) -> String {
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: app{app}
  annotations:
    version: v1
spec:
  components:
    - name: worker
      type: component
      properties:
        image: file:///simulated/worker.wasm
      traits:
        - type: spreadscaler
          properties:
            instances: {INSTANCES}
"#
    )
}

async fn run(hosts: usize, apps: usize) -> anyhow::Result<Row> {
    let nats = NatsServer::start_temporary()?;
    let sim = SimLattice::start(SimConfig {
        nats_url: nats.url(),
        lattice: LATTICE.into(),
        hosts,
        heartbeat_interval: HEARTBEAT,
        ..SimConfig::default()
    })
    .await?;
    let plugins = tempfile::tempdir()?;
    let spreadscaler = repo_root().join("build/plugins/spreadscaler.wasm");
    anyhow::ensure!(
        spreadscaler.exists(),
        "{} is missing: run scripts/build-wasm.sh first",
        spreadscaler.display()
    );
    std::fs::copy(&spreadscaler, plugins.path().join("spreadscaler.wasm"))?;
    // The default placement plugin, when built, as a real controller would run it.
    let placement = repo_root().join("build/plugins/placement.wasm");
    if placement.exists() {
        std::fs::copy(&placement, plugins.path().join("placement.wasm"))?;
    }
    let mut controller = Command::new(std::env::current_exe()?)
        .env(ROLE, "controller")
        .env("TRELLIS_BENCH_NATS", nats.url())
        .env("TRELLIS_BENCH_PLUGINS", plugins.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(controller.stdout.take().expect("piped")).lines();
    let ready = lines.next().transpose()?.unwrap_or_default();
    anyhow::ensure!(ready == "ready", "the controller did not start: {ready}");
    // Let it replay events and read every host's inventory.
    tokio::time::sleep(HEARTBEAT + Duration::from_millis(hosts as u64 / 5)).await;

    let client = async_nats::connect(nats.url()).await?;
    let subjects = Subjects::new(LATTICE);
    let puts: Vec<PutModelResponse> = futures::stream::iter(0..apps)
        .map(|i| {
            let (client, subject) = (client.clone(), subjects.put());
            async move {
                let reply = client.request(subject, manifest(i).into()).await.ok()?;
                serde_json::from_slice(&reply.payload).ok()
            }
        })
        .buffer_unordered(32)
        .filter_map(std::future::ready)
        .collect()
        .await;
    anyhow::ensure!(
        puts.len() == apps,
        "only {} of {apps} puts answered",
        puts.len()
    );

    // First `deployed` per app, as published.
    let mut updates = client.subscribe(format!("wadm.status.{LATTICE}.>")).await?;
    client.flush().await?;
    let started = Instant::now();
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let acks: Vec<(String, Instant, bool)> = futures::stream::iter(0..apps)
        .map(|i| {
            let (client, name) = (client.clone(), format!("app{i}"));
            let subject = subjects.deploy(&name);
            async move {
                let at = Instant::now();
                let ok = match client.request(subject, "".into()).await {
                    Ok(reply) => serde_json::from_slice::<DeployModelResponse>(&reply.payload)
                        .is_ok_and(|r| r.result == DeployResult::Acknowledged),
                    Err(_) => false,
                };
                (name, at, ok)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    for (name, at, ok) in acks {
        anyhow::ensure!(ok, "deploy of {name} was refused");
        sent.insert(name, at);
    }
    let mut deployed: HashMap<String, Duration> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while deployed.len() < apps {
        let msg = tokio::time::timeout_at(deadline, updates.next())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "only {} of {apps} apps deployed within 300 s",
                    deployed.len()
                )
            })?
            .ok_or_else(|| anyhow::anyhow!("status subscription ended"))?;
        let Some(app) = msg.subject.as_str().rsplit('.').next() else {
            continue;
        };
        let Ok(status) = serde_json::from_slice::<Status>(&msg.payload) else {
            continue;
        };
        if status.info.status_type == StatusType::Deployed && !deployed.contains_key(app) {
            if let Some(at) = sent.get(app) {
                deployed.insert(app.to_string(), at.elapsed());
            }
        }
    }
    let all_deployed = started.elapsed();
    let mut latencies: Vec<Duration> = deployed.values().copied().collect();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    // Commands still in flight when the last status came: let them land before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let issued = sim
        .counters()
        .component_scales
        .load(std::sync::atomic::Ordering::Relaxed);
    let minimum = (apps * INSTANCES.min(hosts)) as u64;
    let loads = sim.host_loads();
    let most = loads.iter().copied().max().unwrap_or(0);
    let fewest = loads.iter().copied().min().unwrap_or(0);

    // Let a resync pass (every 5 s) find the settled apps with nothing to do.
    tokio::time::sleep(LoopSettings::default().resync_interval + Duration::from_secs(1)).await;

    // Host failure: kill the busiest host; wait until every app runs on live hosts again.
    let (victim, lost) = sim.busiest_host().expect("hosts");
    sim.kill(&victim);
    let killed = Instant::now();
    let mut replacement = None;
    while killed.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let totals = sim.instance_totals();
        let whole = (0..apps).all(|i| {
            totals
                .get(&format!("app{i}-worker"))
                .is_some_and(|(n, _)| *n as usize == INSTANCES.min(hosts))
        });
        if whole {
            replacement = Some(killed.elapsed());
            break;
        }
    }

    // Stop the controller; it reports its own resource use.
    drop(controller.stdin.take());
    let usage = lines.next().transpose()?.unwrap_or_default();
    controller.wait()?;
    let usage: serde_json::Value = serde_json::from_str(&usage)
        .map_err(|e| anyhow::anyhow!("unreadable usage from the controller `{usage}`: {e}"))?;
    sim.stop().await?;
    Ok(Row {
        hosts,
        apps,
        all_deployed,
        p50: pct(0.5),
        p99: pct(0.99),
        max: pct(1.0),
        issued,
        minimum,
        cpu: Duration::from_secs_f64(usage["cpu_s"].as_f64().unwrap_or_default()),
        peak_rss_mib: usage["max_rss_kib"].as_f64().unwrap_or_default() / 1024.0,
        replacement,
        replaced_instances: lost,
        most,
        fewest,
        work: usage["work"]
            .as_object()
            .map(|work| {
                work.iter()
                    .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default(),
        resync: usage["resync"].as_object().map(|r| {
            let f = |k: &str| r[k].as_f64().unwrap_or_default();
            let apps = r["apps"].as_u64().unwrap_or_default();
            let figures = [
                "wall_ms",
                "cpu_ms",
                "snapshot_ms",
                "plugins_ms",
                "commands_ms",
            ];
            (apps, figures.map(f))
        }),
    })
}

/// The plugin call deadline: the runtime's default unless `TRELLIS_BENCH_DEADLINE_MS` says
/// otherwise (at 10,000 hosts a spreadscaler call that ranks every host takes longer than the
/// default allows).
fn plugin_deadline() -> Duration {
    std::env::var("TRELLIS_BENCH_DEADLINE_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(trellis_runtime::DEFAULT_DEADLINE)
}

/// How placement shortlists hosts: the default unless `TRELLIS_BENCH_SHORTLIST` says `all`
/// (every qualifying host, as before shortlists) or `PERCENT,FLOOR` (`adaptive` for
/// Kubernetes' percentage), to measure the trade-off (docs/decisions/0012-placement-shortlist.md).
fn shortlist() -> Shortlist {
    let Ok(text) = std::env::var("TRELLIS_BENCH_SHORTLIST") else {
        return Shortlist::default();
    };
    if text == "all" {
        return Shortlist::ALL;
    }
    let (percent, floor) = text.split_once(',').unwrap_or_else(|| {
        panic!("TRELLIS_BENCH_SHORTLIST: `{text}` is not `all` or PERCENT,FLOOR")
    });
    Shortlist {
        percent: (percent != "adaptive").then(|| percent.parse().expect("a percentage")),
        floor: floor.parse().expect("a floor"),
    }
}

/// The controller, in a process of its own: prints `ready`, runs until stdin closes, then
/// prints its resource use as JSON.
fn controller_child() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let controller = Controller::start(ControllerConfig {
            nats_url: std::env::var("TRELLIS_BENCH_NATS")?,
            lattices: vec![LATTICE.into()],
            plugin_dir: std::env::var("TRELLIS_BENCH_PLUGINS")?.into(),
            settings: LoopSettings {
                host_timeout: HOST_TIMEOUT,
                ..LoopSettings::default()
            },
            runtime: RuntimeConfig {
                default_limits: Limits {
                    deadline: plugin_deadline(),
                    ..Limits::default()
                },
                shortlist: shortlist(),
                ..RuntimeConfig::default()
            },
            ..ControllerConfig::default()
        })
        .await?;
        println!("ready");
        std::io::stdout().flush()?;
        // Wait for the parent to close stdin.
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        })
        .await?;
        controller.stop().await;
        anyhow::Ok(())
    })?;
    // SAFETY: getrusage writes into the struct we hand it and nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let work: serde_json::Map<String, serde_json::Value> = cost::spent()
        .into_iter()
        .map(|(work, spent)| (work.name().to_string(), spent.as_secs_f64().into()))
        .collect();
    let resync = cost::last_quiet_resync().map(|pass| {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        serde_json::json!({
            "apps": pass.apps,
            "wall_ms": ms(pass.wall),
            "cpu_ms": ms(pass.cpu()),
            "snapshot_ms": ms(pass.snapshot),
            "plugins_ms": ms(pass.plugins),
            "commands_ms": ms(pass.commands),
        })
    });
    println!(
        "{}",
        serde_json::json!({
            "cpu_s": secs(usage.ru_utime) + secs(usage.ru_stime),
            "max_rss_kib": usage.ru_maxrss,
            "work": work,
            "resync": resync,
        })
    );
    Ok(())
}
