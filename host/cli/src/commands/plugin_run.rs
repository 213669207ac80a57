//! `trellis plugin run`: the run (`trellis_cli::plugin_run`) printed for people or scripts.

use std::path::{Path, PathBuf};

use anyhow::bail;
use trellis_cli::client::load_manifest_file;
use trellis_cli::plugin_run::{self, PluginRun};
use trellis_lattice::api::Severity;

use crate::args::Connection;
use crate::output::{print_json, Output};

pub struct RunArgs {
    pub plugin: PathBuf,
    pub manifest: PathBuf,
    pub state: Option<PathBuf>,
    pub plugins: Option<PathBuf>,
    pub conn: Connection,
    pub cache_dir: Option<PathBuf>,
    pub repeat: u32,
}

/// Where the other plugins come from when no folder is given: the controller's default folder,
/// when there is one here.
const DEFAULT_PLUGINS: &str = "build/plugins";

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let manifest = load_manifest_file(&args.manifest)?;
    let snapshot = match &args.state {
        Some(file) => plugin_run::read_state(file)?,
        None => {
            let client = args.conn.client().await?;
            client.snapshot().await?.into_snapshot()?
        }
    };
    let others = args
        .plugins
        .clone()
        .or_else(|| Some(PathBuf::from(DEFAULT_PLUGINS)).filter(|d| d.is_dir()));
    let lattice = args.conn.nats.resolve()?.lattice;
    let (plugin, manifest_file) = (args.plugin.clone(), args.manifest.clone());
    let (cache_dir, repeat) = (args.cache_dir.clone(), args.repeat);
    let run = tokio::task::spawn_blocking(move || {
        let others = others.as_deref();
        plugin_run::run(
            &plugin, others, &manifest, snapshot, &lattice, cache_dir, repeat,
        )
    })
    .await??;
    if args.conn.output == Output::Json {
        print_json(&run)?;
    } else {
        print_run(&run, &manifest_file);
    }
    if run.plugin.kind == "scaler" && run.scalers.is_empty() {
        bail!(
            "{} uses no trait of the plugin's types ({}), so nothing of it ran: add one to a component's traits (`- type: {}`)",
            manifest_file.display(),
            run.plugin.trait_types.join(", "),
            run.plugin.trait_types.first().map(String::as_str).unwrap_or("TYPE")
        );
    }
    if !run.calls.failures.is_empty() {
        let failures: Vec<String> = run
            .calls
            .failures
            .iter()
            .map(|(fault, n)| format!("{n} {fault}"))
            .collect();
        bail!(
            "calls of {} failed ({}): the statuses and findings above say how",
            run.plugin.name,
            failures.join(", ")
        );
    }
    Ok(())
}

fn print_run(run: &PluginRun, manifest: &Path) {
    let p = &run.plugin;
    println!(
        "{} {} ({}, contract {}{}) loaded in {:.0} ms{}",
        p.name,
        p.version,
        p.kind,
        p.contract,
        if p.trait_types.is_empty() {
            String::new()
        } else {
            format!(", {}", p.trait_types.join(", "))
        },
        run.load_ms,
        if run.others.is_empty() {
            String::new()
        } else {
            format!(" beside {}", run.others.join(", "))
        }
    );
    for s in &run.scalers {
        let message = if s.info.message.is_empty() {
            String::new()
        } else {
            format!(": {}", s.info.message)
        };
        // As the API and `app status` spell it (`reconciling`), not as Rust does.
        let status = serde_json::to_value(s.info.status_type)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        println!("\nscaler {} ({}): {status}{message}", s.id, s.name);
        for c in run.commands.iter().filter(|c| c.scaler == s.id) {
            println!("  {} {}", c.subject, c.body);
        }
    }
    for placement in &run.placements {
        println!("\nplacement of {}", placement.component_id);
        for v in &placement.verdicts {
            let score = placement
                .scores
                .iter()
                .find(|s| s.host_id == v.host_id)
                .map(|s| s.value.to_string())
                .unwrap_or_else(|| "-".into());
            let why = if v.fits {
                String::new()
            } else {
                format!("  ({})", v.reason)
            };
            println!(
                "  {:<24} {:<8} score {score}{why}",
                v.host_id,
                if v.fits { "fits" } else { "refused" }
            );
        }
    }
    if !run.diagnostics.is_empty() {
        println!();
        let response = trellis_lattice::api::ValidateResponse {
            valid: !run
                .diagnostics
                .iter()
                .any(|d| d.severity == Severity::Error),
            diagnostics: run.diagnostics.clone(),
        };
        print!("{}", trellis_cli::validate::render(manifest, &response));
    }
    let micros = |v: Option<u64>| v.map(|v| format!("{v} µs")).unwrap_or_else(|| "-".into());
    println!(
        "\n{} calls, p50 {}, p99 {}",
        run.calls.count,
        micros(run.calls.p50_us),
        micros(run.calls.p99_us)
    );
}
