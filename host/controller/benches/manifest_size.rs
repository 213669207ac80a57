//! What one manifest costs the controller, by its size (issue 16: bad input costs at most its
//! size): CPU time to validate it and to plan it, and peak memory, for manifests of 10 to
//! 10,000 components. Growth should be linear: ten times the components, about ten times the
//! CPU and ten times the memory above the baseline.
//!
//! Each size runs in a fresh child process (this binary, re-executed), so that its peak RSS
//! (`getrusage`'s `ru_maxrss`, which never goes down) is that size's alone. The child loads the
//! built-in plugins from `build/plugins` (the real runtime: scalers' `check`, the validator,
//! placement), then:
//! - validate: `validate_text` on the manifest text (parse, controller checks, every scaler
//!   slot's `check`, every validator), as `put` and `trellis app validate` do;
//!   A text past the manifest limits (`trellis_lattice::limits`: the byte limit is passed at
//!   about 1,700 components of this shape) is refused by `put` when parsed; for those sizes
//!   the bench times the refusal and then the same steps on the manifest read without that
//!   check, so that the cost of the components themselves is still shown (marked †);
//! - plan: `plan_app` on the parsed manifest against a snapshot of a few empty hosts, as a pass
//!   does for a newly deployed app (every spreadscaler asks placement to rank the hosts).
//!
//! CPU times are the child's main thread's (`CLOCK_THREAD_CPUTIME_ID`, user + system), where
//! both run; the runtime's epoch ticker is left out. Every child first validates and plans a
//! one-component manifest, so that first-call costs (the plugins' code paged in) are not
//! charged to the smallest size. The baseline row is the same child loading the runtime and
//! doing that warm-up, nothing else. The parent kills a child that passes a memory or time cap
//! (the machine must survive a quadratic run) and says so in the table.
//!
//! Run: `scripts/build-wasm.sh` once, then
//! `cargo bench -p trellis-controller --bench manifest_size`.
//! `MANIFEST_SIZES=10,100,1000` (default `10,100,1000,10000`) chooses the sizes;
//! `MANIFEST_MAX_RSS_MIB` (default 4096) and `MANIFEST_MAX_SECS` (default 180) are the caps;
//! `MANIFEST_DEADLINE_MS` replaces the plugin call deadline (default: the runtime's own).

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use trellis_controller::reconciler::planning::plan_app;
use trellis_controller::validate::{has_errors, validate, validate_text};
use trellis_lattice::Manifest;
use trellis_runtime::bindings::{HostInfo, Pair};
use trellis_runtime::{LatticeSnapshot, Limits, Runtime, RuntimeConfig};

/// Set in a child: `baseline` or the number of components.
const CHILD: &str = "TRELLIS_MANIFEST_BENCH_CHILD";
/// Hosts in the planning snapshot: a few, so that planning's cost is the manifest's.
const HOSTS: usize = 4;
/// Every LINK_EVERY-th component links to the next one (real apps link a few components).
const LINK_EVERY: usize = 10;
const DEFAULT_SIZES: &str = "10,100,1000,10000";

fn main() -> anyhow::Result<()> {
    if let Ok(what) = std::env::var(CHILD) {
        return child(&what);
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and should not
    // spend minutes here.
    if !std::env::args().any(|a| a == "--bench") {
        println!("manifest_size benchmark: run with `cargo bench -p trellis-controller --bench manifest_size`");
        return Ok(());
    }
    let sizes: Vec<usize> = std::env::var("MANIFEST_SIZES")
        .unwrap_or_else(|_| DEFAULT_SIZES.into())
        .split(',')
        .map(|s| {
            s.trim().parse().unwrap_or_else(|_| {
                panic!("MANIFEST_SIZES: `{s}` is not a number of components (e.g. 10,100)")
            })
        })
        .collect();
    let caps = Caps {
        rss_mib: env_number("MANIFEST_MAX_RSS_MIB", 4096),
        time: Duration::from_secs(env_number("MANIFEST_MAX_SECS", 180)),
    };
    let plugins = plugin_dir();
    anyhow::ensure!(
        plugins.join("spreadscaler.wasm").exists() && plugins.join("validator.wasm").exists(),
        "{} has no built plugins: run scripts/build-wasm.sh first",
        plugins.display()
    );

    eprintln!("== baseline (runtime loaded and warmed up, no manifest)");
    let baseline = run_child("baseline", &caps)?;
    let Outcome::Done(baseline) = baseline else {
        anyhow::bail!("the baseline child did not finish: {baseline:?}");
    };
    let mut rows = Vec::new();
    for n in sizes {
        eprintln!("== {n} components");
        let outcome = run_child(&n.to_string(), &caps)?;
        eprintln!("{outcome:?}");
        rows.push((n, outcome));
    }
    print_table(&baseline, &rows, &caps);
    Ok(())
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}: `{v}` is not a number")),
        Err(_) => default,
    }
}

fn plugin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../build/plugins")
}

/// What one child measured.
#[derive(Debug, Default)]
struct Measured {
    manifest_bytes: usize,
    /// Set when `Manifest::parse` refuses the text (a manifest limit): why, and how long it
    /// took. The row then measures the manifest read without that check.
    refused: Option<(String, Duration)>,
    validate_cpu: Duration,
    plan_cpu: Duration,
    peak_rss_kib: u64,
    findings: usize,
    /// Plugin calls to validate and plan, and how many failed (deadline, memory cap): work
    /// cut short, so the row undercounts.
    plugin_calls: usize,
    plugin_failures: usize,
    errors: bool,
    scalers: usize,
    commands: usize,
    failed_scalers: usize,
}

#[derive(Debug)]
enum Outcome {
    Done(Measured),
    /// Killed by the parent: why, after how long, at what RSS.
    Killed {
        reason: String,
        after: Duration,
        rss_kib: u64,
    },
    Failed(String),
}

struct Caps {
    rss_mib: u64,
    time: Duration,
}

/// Runs one child, killing it when it passes a cap. (`ulimit -v` cannot cap it: the plugin
/// runtime's pooling allocator reserves hundreds of GiB of address space up front.)
fn run_child(what: &str, caps: &Caps) -> anyhow::Result<Outcome> {
    let mut child = Command::new(std::env::current_exe()?)
        .env(CHILD, what)
        .stdout(Stdio::piped())
        .spawn()?;
    let started = Instant::now();
    let mut highest_rss = 0;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        let rss = current_rss_kib(&child).unwrap_or(0);
        highest_rss = highest_rss.max(rss);
        let reason = if rss > caps.rss_mib * 1024 {
            Some(format!("RSS over {} MiB", caps.rss_mib))
        } else if started.elapsed() > caps.time {
            Some(format!("over {} s", caps.time.as_secs()))
        } else {
            None
        };
        if let Some(reason) = reason {
            child.kill()?;
            child.wait()?;
            return Ok(Outcome::Killed {
                reason,
                after: started.elapsed(),
                rss_kib: highest_rss,
            });
        }
        // Often enough that a quadratic allocation (GiB/s) passes the cap by little.
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut out)?;
    let status = child.wait()?;
    if !status.success() {
        return Ok(Outcome::Failed(format!("exited with {status}")));
    }
    let v: serde_json::Value = serde_json::from_str(out.trim())
        .map_err(|e| anyhow::anyhow!("unreadable report from the child `{out}`: {e}"))?;
    let number = |k: &str| v[k].as_u64().unwrap_or_default();
    let micros = |k: &str| Duration::from_micros(number(k));
    Ok(Outcome::Done(Measured {
        manifest_bytes: number("manifest_bytes") as usize,
        refused: v["refused"].as_array().map(|r| {
            (
                r[0].as_str().unwrap_or_default().to_string(),
                Duration::from_micros(r[1].as_u64().unwrap_or_default()),
            )
        }),
        validate_cpu: micros("validate_cpu_us"),
        plan_cpu: micros("plan_cpu_us"),
        peak_rss_kib: number("peak_rss_kib"),
        findings: number("findings") as usize,
        plugin_calls: number("plugin_calls") as usize,
        plugin_failures: number("plugin_failures") as usize,
        errors: v["errors"].as_bool().unwrap_or_default(),
        scalers: number("scalers") as usize,
        commands: number("commands") as usize,
        failed_scalers: number("failed_scalers") as usize,
    }))
}

/// A running child's resident set, from /proc (VmRSS, in KiB).
fn current_rss_kib(child: &Child) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn print_table(baseline: &Measured, rows: &[(usize, Outcome)], caps: &Caps) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let deadline = plugin_deadline();
    println!();
    println!(
        "{HOSTS} hosts in the snapshot; a spreadscaler on every component, a link on every {LINK_EVERY}th; \
         plugin deadline {deadline:?}; caps {} MiB RSS, {} s",
        caps.rss_mib,
        caps.time.as_secs()
    );
    println!(
        "baseline (the child loading the runtime and plugins, warmed up on one component): peak RSS {:.1} MiB",
        mib(baseline.peak_rss_kib)
    );
    println!();
    println!("| components | manifest bytes | validate CPU ms | plan CPU ms | peak RSS MiB | above baseline MiB | per-component µs | growth: CPU / RSS above baseline | findings | plugin calls | scalers / commands |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|");
    let mut previous: Option<(usize, Duration, u64)> = None;
    let mut notes = Vec::new();
    for (n, outcome) in rows {
        match outcome {
            Outcome::Done(m) => {
                let cpu = m.validate_cpu + m.plan_cpu;
                let above = m.peak_rss_kib.saturating_sub(baseline.peak_rss_kib);
                let growth = match previous {
                    Some((pn, pcpu, pabove)) => format!(
                        "×{:.1} / ×{} for ×{:.0} components",
                        cpu.as_secs_f64() / pcpu.as_secs_f64().max(1e-9),
                        if pabove == 0 {
                            "–".to_string()
                        } else {
                            format!("{:.1}", above as f64 / pabove as f64)
                        },
                        *n as f64 / pn as f64
                    ),
                    None => "–".into(),
                };
                let mut findings = m.findings.to_string();
                if m.errors {
                    findings.push_str(" (errors!)");
                }
                let mut calls = m.plugin_calls.to_string();
                if m.plugin_failures > 0 {
                    let _ = write!(calls, " ({} failed)", m.plugin_failures);
                }
                let mut planned = format!("{} / {}", m.scalers, m.commands);
                if m.failed_scalers > 0 {
                    let _ = write!(planned, " ({} failed)", m.failed_scalers);
                }
                let mark = if let Some((why, cpu)) = &m.refused {
                    notes.push(format!(
                        "† {n} components ({} bytes): `put` refuses the text before validating it, \
                         in {} µs: \"{why}\". The row measures the same steps on the manifest \
                         read without that check.",
                        m.manifest_bytes,
                        cpu.as_micros()
                    ));
                    " †"
                } else {
                    ""
                };
                println!(
                    "| {n}{mark} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {growth} | {findings} | {calls} | {planned} |",
                    m.manifest_bytes,
                    m.validate_cpu.as_secs_f64() * 1e3,
                    m.plan_cpu.as_secs_f64() * 1e3,
                    mib(m.peak_rss_kib),
                    mib(above),
                    cpu.as_secs_f64() * 1e6 / *n as f64,
                );
                previous = Some((*n, cpu, above));
            }
            Outcome::Killed {
                reason,
                after,
                rss_kib,
            } => {
                println!(
                    "| {n} | {} | killed: {reason} after {:.1} s (RSS seen: {:.0} MiB) | | | | | | | | |",
                    manifest(*n).len(),
                    after.as_secs_f64(),
                    mib(*rss_kib)
                );
                previous = None;
            }
            Outcome::Failed(why) => {
                println!(
                    "| {n} | {} | failed: {why} | | | | | | | | |",
                    manifest(*n).len()
                );
                previous = None;
            }
        }
    }
    for note in notes {
        println!("\n{note}");
    }
}

/// A manifest of `n` components of the shape real ones have: each runs under a spreadscaler
/// with a spread over two regions; every `LINK_EVERY`-th calls the next over wasi:http.
fn manifest(n: usize) -> String {
    let mut text = String::from(
        "apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: big
  annotations:
    version: v1
    description: \"a manifest of many components, for the manifest_size bench\"
spec:
  components:
",
    );
    for i in 0..n {
        let _ = write!(
            text,
            "    - name: c{i}
      type: component
      properties:
        image: file:///build/components/c{i}.wasm
      traits:
        - type: spreadscaler
          properties:
            instances: 2
            spread:
              - name: east
                weight: 50
                requirements:
                  region: east
              - name: west
                weight: 50
                requirements:
                  region: west
"
        );
        if i % LINK_EVERY == 0 && i + 1 < n {
            let _ = write!(
                text,
                "        - type: link
          properties:
            target: c{}
            namespace: wasi
            package: http
            interfaces: [outgoing-handler]
",
                i + 1
            );
        }
    }
    text
}

fn snapshot() -> Arc<LatticeSnapshot> {
    Arc::new(LatticeSnapshot::of_hosts((0..HOSTS).map(|i| {
        let id = format!("host-{i}");
        HostInfo {
            friendly_name: id.clone(),
            id,
            labels: vec![Pair {
                key: "region".into(),
                value: ["east", "west"][i % 2].into(),
            }],
            uptime_seconds: 60,
        }
    })))
}

fn plugin_deadline() -> Duration {
    std::env::var("MANIFEST_DEADLINE_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(trellis_runtime::DEFAULT_DEADLINE)
}

/// This thread's CPU time (user + system), to the nanosecond (`getrusage(RUSAGE_THREAD)`
/// splits it by ticks and read 0 for a 10-component plan).
fn thread_cpu() -> Duration {
    // SAFETY: clock_gettime writes into the struct we hand it and nothing else.
    let t = unsafe {
        let mut t: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t);
        t
    };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn peak_rss_kib() -> u64 {
    // SAFETY: as above.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    usage.ru_maxrss as u64
}

/// Plugin calls so far, and how many of them failed (deadline, memory cap, trap): the runtime's
/// own count, so a row whose work was cut short says so.
fn plugin_calls(runtime: &Runtime) -> (u64, u64) {
    runtime
        .plugins()
        .summaries()
        .iter()
        .fold((0, 0), |(calls, failed), p| {
            (calls + p.calls, failed + p.failures.values().sum::<u64>())
        })
}

/// The child: load the runtime, then (unless `baseline`) validate and plan one manifest, and
/// print what it cost as one JSON line.
fn child(what: &str) -> anyhow::Result<()> {
    let runtime = Runtime::new(RuntimeConfig {
        plugin_dir: plugin_dir(),
        default_limits: Limits {
            deadline: plugin_deadline(),
            ..Limits::default()
        },
        ..RuntimeConfig::default()
    })?;
    runtime.reload();
    let plugins = runtime.plugins();
    anyhow::ensure!(
        plugins.scaler_for("spreadscaler").is_some()
            && plugins.scaler_for("link").is_some()
            && !plugins.validators.is_empty(),
        "the built-in plugins did not load from {}",
        plugin_dir().display()
    );
    let snapshot = snapshot();
    let warm_up = manifest(1);
    validate_text(&runtime, &warm_up);
    plan_app(
        &runtime,
        &Manifest::parse(&warm_up)?,
        &snapshot,
        &Default::default(),
    );
    let mut report = serde_json::json!({});
    if what != "baseline" {
        let n: usize = what.parse()?;
        let text = manifest(n);
        let calls_before = plugin_calls(&runtime);

        // `put` parses first and refuses a text past the manifest limits (size, counts)
        // before any other work. Such a text is timed as refused; then, so that the table
        // still shows what its components would cost, the same steps as `validate_text` run
        // on the manifest read without those checks.
        let started = thread_cpu();
        let refused = Manifest::parse(&text).err();
        let refused_cpu = thread_cpu() - started;
        let (findings, validate_cpu, parsed) = match &refused {
            None => {
                let started = thread_cpu();
                let findings = validate_text(&runtime, &text);
                let validate_cpu = thread_cpu() - started;
                (findings, validate_cpu, Manifest::parse(&text)?)
            }
            Some(_) => {
                let started = thread_cpu();
                let parsed: Manifest = serde_yaml_ng::from_str(&text)?;
                let findings = validate(&runtime, &parsed);
                let validate_cpu = thread_cpu() - started;
                (findings, validate_cpu, parsed)
            }
        };
        let refused = refused.map(|e| (e.to_string(), refused_cpu.as_micros() as u64));

        // A pass plans a manifest already parsed (the store keeps them parsed).
        let started = thread_cpu();
        let planned = plan_app(&runtime, &parsed, &snapshot, &Default::default());
        let plan_cpu = thread_cpu() - started;
        let calls = plugin_calls(&runtime);

        report = serde_json::json!({
            "manifest_bytes": text.len(),
            "refused": refused,
            "validate_cpu_us": validate_cpu.as_micros() as u64,
            "plan_cpu_us": plan_cpu.as_micros() as u64,
            "findings": findings.len(),
            "plugin_calls": calls.0 - calls_before.0,
            "plugin_failures": calls.1 - calls_before.1,
            "errors": has_errors(&findings),
            "scalers": planned.len(),
            "commands": planned.iter().map(|p| p.commands.len()).sum::<usize>(),
            "failed_scalers": planned
                .iter()
                .filter(|p| p.status.status_type == trellis_lattice::api::StatusType::Failed)
                .count(),
        });
        if has_errors(&findings) {
            for d in findings.iter().take(5) {
                eprintln!("{d}");
            }
        }
    }
    report["peak_rss_kib"] = peak_rss_kib().into();
    println!("{report}");
    Ok(())
}
