//! `trellis plugin list|new|build|test` (and `run`, in `plugin_run`): what a controller has loaded, and the plugin author's
//! loop. `build` and `test` run cargo the way the plugin guide says, with errors that name the
//! missing tool and the command that installs it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use crate::args::{Connection, PluginCmd};
use crate::output::{print_json, Output};

pub async fn run(cmd: PluginCmd) -> anyhow::Result<()> {
    match cmd {
        PluginCmd::List { conn } => list(&conn).await,
        PluginCmd::New {
            name,
            kind,
            lang,
            dir,
            sdk_path,
        } => new(&dir, &name, &kind, &lang, sdk_path),
        PluginCmd::Build { dir, output } => build(&dir, output),
        PluginCmd::Test { dir } => test(&dir),
        PluginCmd::Run {
            plugin,
            manifest,
            state,
            from_lattice: _,
            plugins,
            conn,
            cache,
            repeat,
        } => {
            super::plugin_run::run(super::plugin_run::RunArgs {
                plugin,
                manifest,
                state,
                plugins,
                conn,
                cache_dir: cache.dir(),
                repeat,
            })
            .await
        }
    }
}

/// The plugins a controller has loaded, with their calls, failures and latency, and the files
/// it refused.
async fn list(conn: &Connection) -> anyhow::Result<()> {
    let client = conn.client().await?;
    let list = client.plugins().await?;
    if conn.output == Output::Json {
        return print_json(&list);
    }
    println!("plugins in {}", list.plugin_dir);
    println!(
        "{:<16} {:<9} {:<10} {:<8} {:<24} {:>7} {:>8} {:>8} {:>8}",
        "NAME", "VERSION", "KIND", "CONTRACT", "TRAITS", "CALLS", "FAILED", "P50", "P99"
    );
    let micros = |v: Option<u64>| v.map(|v| format!("{v}µs")).unwrap_or_else(|| "-".into());
    for p in &list.plugins {
        println!(
            "{:<16} {:<9} {:<10} {:<8} {:<24} {:>7} {:>8} {:>8} {:>8}",
            p.name,
            p.version,
            p.kind,
            if p.contract.is_empty() {
                "-"
            } else {
                &p.contract
            },
            p.trait_types.join(","),
            p.calls,
            p.failures.values().sum::<u64>(),
            micros(p.p50_us),
            micros(p.p99_us)
        );
    }
    for problem in &list.problems {
        println!("refused {}: {}", problem.file, problem.error);
    }
    Ok(())
}

/// `trellis plugin new NAME --kind KIND --lang LANG --dir DIR`: a plugin project, and what to
/// run next.
fn new(
    dir: &Path,
    name: &str,
    kind: &str,
    lang: &str,
    sdk_path: Option<PathBuf>,
) -> anyhow::Result<()> {
    use trellis_cli::scaffold::{new_plugin, next_steps, Sdk};
    let sdk = sdk_path.map(Sdk::Path).unwrap_or_default();
    let root = new_plugin(dir, name, kind, lang, &sdk)?;
    println!(
        "created {kind} plugin `{name}` ({lang}) in {}",
        root.display()
    );
    println!("next:  {}", next_steps(lang, &root));
    Ok(())
}

const WASM_TARGET: &str = "wasm32-wasip2";

/// The plugin crate in a folder, as `cargo metadata` describes it.
struct PluginCrate {
    manifest: PathBuf,
    package: String,
    /// The cdylib's name: the `.wasm` file is named after it.
    lib_name: String,
    target_dir: PathBuf,
}

/// `cargo`, or the one that runs us (cargo sets CARGO for what it starts).
fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn cargo_missing(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!(
            "cargo is not installed (or not on PATH): install Rust with rustup (https://rustup.rs: `curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh`), then `rustup target add {WASM_TARGET}`"
        )
    } else {
        anyhow::anyhow!("cannot run cargo: {e}")
    }
}

impl PluginCrate {
    fn find(dir: &Path) -> anyhow::Result<Self> {
        let manifest = dir.join("Cargo.toml");
        if !manifest.is_file() {
            bail!(
                "{} has no Cargo.toml: give the plugin crate's folder (`trellis plugin new NAME` makes one)",
                dir.display()
            );
        }
        let manifest = std::fs::canonicalize(&manifest)
            .with_context(|| format!("cannot resolve {}", manifest.display()))?;
        let out = cargo()
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--manifest-path",
            ])
            .arg(&manifest)
            .stderr(Stdio::piped())
            .output()
            .map_err(cargo_missing)?;
        if !out.status.success() {
            bail!(
                "cargo cannot read {}:\n{}",
                manifest.display(),
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        let meta: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("unreadable `cargo metadata` output")?;
        let target_dir = PathBuf::from(meta["target_directory"].as_str().unwrap_or("target"));
        let package = meta["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path()))
            .with_context(|| {
                format!(
                    "{} is a workspace, not a plugin crate: give the folder of the plugin itself",
                    manifest.display()
                )
            })?;
        let name = package["name"].as_str().unwrap_or_default().to_string();
        let lib = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| {
                t["crate_types"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
            })
            .with_context(|| {
                format!(
                    "{name} is not a plugin crate: its [lib] needs crate-type = [\"cdylib\"] (as `trellis plugin new` writes it)"
                )
            })?;
        Ok(Self {
            manifest,
            package: name,
            lib_name: lib["name"].as_str().unwrap_or_default().replace('-', "_"),
            target_dir,
        })
    }

    fn folder(&self) -> &Path {
        self.manifest.parent().unwrap_or(Path::new("."))
    }

    fn wasm(&self) -> PathBuf {
        self.target_dir
            .join(WASM_TARGET)
            .join("release")
            .join(format!("{}.wasm", self.lib_name))
    }
}

/// Refuses early, with the fix, when rustup says the wasm target is missing. Without rustup
/// (a distribution's Rust) cargo's own failure is explained instead, in [`run_cargo`].
fn check_wasm_target(folder: &Path) -> anyhow::Result<()> {
    let Ok(out) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(folder)
        .stderr(Stdio::null())
        .output()
    else {
        return Ok(());
    };
    if out.status.success() && !String::from_utf8_lossy(&out.stdout).contains(WASM_TARGET) {
        bail!(
            "the Rust target {WASM_TARGET} is not installed: run `rustup target add {WASM_TARGET}`"
        );
    }
    Ok(())
}

/// Runs cargo in the plugin's folder, passing its output through (stdout to stdout, progress
/// and errors to stderr), and explains the failures a newcomer meets.
fn run_cargo(krate: &PluginCrate, args: &[&str]) -> anyhow::Result<()> {
    let mut child = cargo()
        .args(args)
        .arg("--manifest-path")
        .arg(&krate.manifest)
        .current_dir(krate.folder())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(cargo_missing)?;
    let mut seen = String::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            eprintln!("{line}");
            seen.push_str(&line);
            seen.push('\n');
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if status.success() {
        return Ok(());
    }
    if seen.contains("target may not be installed") || seen.contains("can't find crate for `core`")
    {
        bail!(
            "the Rust target {WASM_TARGET} is not installed: run `rustup target add {WASM_TARGET}`"
        );
    }
    bail!(
        "`cargo {}` failed for {} ({status}): see cargo's messages above",
        args.join(" "),
        krate.package
    )
}

/// `trellis plugin build [DIR]`: the release component, and where it is.
fn build(dir: &Path, output: Output) -> anyhow::Result<()> {
    let krate = PluginCrate::find(dir)?;
    check_wasm_target(krate.folder())?;
    run_cargo(&krate, &["build", "--target", WASM_TARGET, "--release"])?;
    let wasm = krate.wasm();
    if !wasm.is_file() {
        bail!(
            "cargo built {} but {} is not there; is CARGO_TARGET_DIR or build.target-dir pointing elsewhere?",
            krate.package,
            wasm.display()
        );
    }
    let size = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
    if output == Output::Json {
        return print_json(&serde_json::json!({
            "package": krate.package,
            "wasm": wasm,
            "bytes": size,
        }));
    }
    println!("built {} ({} KiB)", wasm.display(), size.div_ceil(1024));
    println!(
        "load it: copy it into the controller's plugin folder, e.g.  cp {} build/plugins/",
        wasm.display()
    );
    Ok(())
}

/// `trellis plugin test [DIR]`: the plugin's unit tests, natively (no wasm needed).
fn test(dir: &Path) -> anyhow::Result<()> {
    let krate = PluginCrate::find(dir)?;
    run_cargo(&krate, &["test"])
}
