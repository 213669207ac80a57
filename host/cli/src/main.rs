//! `trellis`: deploy WebAssembly applications onto a lattice of hosts and keep them deployed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use trellis_cli::client::{load_manifest_file, ApiClient};
use trellis_cli::nats_server::NatsServer;
use trellis_controller::{Controller, ControllerConfig};
use trellis_lattice::api::{DeployResult, PutResult, Status, StatusType};
use trellis_node::{Node, NodeConfig};

#[derive(Parser)]
#[command(
    name = "trellis",
    version,
    about = "Deploy WebAssembly applications onto a lattice of hosts, and keep them deployed",
    long_about = "Deploy WebAssembly applications onto a lattice of hosts joined over NATS, and keep them deployed.\n\n\
Start here:  trellis up --example echo     (a local lattice with an example app)\n\
then:        curl http://127.0.0.1:8080/\n\n\
Scalers, placement policies and validators are WebAssembly plugins loaded from a folder; \
trellis speaks the wadm API and the wasmCloud control interface, so `wash app` works against it."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args, Clone)]
struct Connection {
    /// NATS server to connect to.
    #[arg(long, env = "TRELLIS_NATS", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Lattice name (several lattices can share one NATS server).
    #[arg(long, env = "TRELLIS_LATTICE", default_value = "default")]
    lattice: String,
    /// Output format: tables for people, JSON for scripts.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a whole lattice on this machine: nats-server (with JetStream), a controller and a node.
    ///
    /// Data (NATS JetStream) goes under --data-dir. Stop with Ctrl-C.
    Up(UpArgs),
    /// Run a controller: stores manifests, reconciles the lattice with the scaler plugins.
    Controller(ControllerArgs),
    /// Run a lattice node: runs components and the built-in providers, obeys the controller.
    Node(NodeArgs),
    /// Manage applications: put, deploy, status, list.
    #[command(subcommand)]
    App(AppCmd),
    /// Inspect the controller's plugins.
    #[command(subcommand)]
    Plugin(PluginCmd),
    /// Look at the lattice: hosts and what runs on them.
    #[command(subcommand)]
    Get(GetCmd),
}

#[derive(Subcommand)]
enum GetCmd {
    /// Every host of the lattice (each answers a ping), with its labels and uptime.
    Hosts {
        #[command(flatten)]
        conn: Connection,
    },
    /// What runs on one host: components (with their counts) and providers.
    Inventory {
        #[command(flatten)]
        conn: Connection,
        /// The host id (from `trellis get hosts`); a unique prefix is enough.
        host: String,
    },
}

#[derive(Subcommand)]
enum PluginCmd {
    /// The plugins a controller has loaded, their calls, failures and latency, and the files it
    /// refused (with why).
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Create a plugin crate: a trait impl and its unit tests, ready to build for wasm32-wasip2.
    ///
    ///   trellis plugin new myscaler --kind scaler
    ///   cd myscaler && cargo test && cargo build --target wasm32-wasip2 --release
    New {
        /// The plugin's name; for a scaler it is also the trait type it handles.
        name: String,
        /// What the plugin decides: scaler (how many, where), placement (which host), validator.
        #[arg(long, default_value = "scaler")]
        kind: String,
        /// The folder to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Args)]
struct UpArgs {
    /// Use this NATS server (with JetStream) instead of starting one, e.g. nats://127.0.0.1:4222.
    #[arg(long, env = "TRELLIS_NATS")]
    nats: Option<String>,
    /// Lattice name.
    #[arg(long, env = "TRELLIS_LATTICE", default_value = "default")]
    lattice: String,
    /// Port for the nats-server that `up` starts.
    #[arg(long, default_value_t = 4222)]
    nats_port: u16,
    /// Folder for NATS data and logs.
    #[arg(long, default_value = ".trellis")]
    data_dir: PathBuf,
    /// Folder of plugins (*.wasm); watched for changes.
    #[arg(long, env = "TRELLIS_PLUGINS", default_value = "build/plugins")]
    plugins: PathBuf,
    /// Also put and deploy an example from examples/ (e.g. `echo`).
    #[arg(long)]
    example: Option<String>,
    /// Also put and deploy this manifest.
    #[arg(long)]
    deploy: Option<PathBuf>,
    /// Labels of the local node, as key=value.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
}

#[derive(Args)]
struct ControllerArgs {
    #[command(flatten)]
    conn: Connection,
    /// Folder of plugins (*.wasm); watched for changes.
    #[arg(long, env = "TRELLIS_PLUGINS", default_value = "build/plugins")]
    plugins: PathBuf,
    /// Manage these lattices too (repeat for several).
    #[arg(long = "also-lattice")]
    also: Vec<String>,
    /// Seconds without a heartbeat after which a host counts as gone.
    #[arg(long, default_value_t = 15)]
    host_timeout: u64,
    /// TOML config file: plugin folder and per-plugin limits (deadline_ms, memory_mib).
    #[arg(long, env = "TRELLIS_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct NodeArgs {
    #[command(flatten)]
    conn: Connection,
    /// Labels of this node, as key=value (repeat for several). Placement uses them.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 5)]
    heartbeat: u64,
    /// A human-friendly name for this node.
    #[arg(long)]
    name: Option<String>,
}

#[derive(Subcommand)]
enum AppCmd {
    /// Store a manifest (a new version of its app). Relative file:// images resolve against the manifest's folder.
    Put {
        #[command(flatten)]
        conn: Connection,
        /// The manifest file (YAML or JSON).
        file: PathBuf,
    },
    /// Deploy an app: a manifest file (put, then deploy) or the name of a stored app.
    Deploy {
        #[command(flatten)]
        conn: Connection,
        /// A manifest file, or the name of an app already put.
        app: String,
        /// Version to deploy (default: the latest).
        #[arg(long)]
        version: Option<String>,
        /// Return at once instead of waiting until the app is deployed.
        #[arg(long)]
        no_wait: bool,
        /// How long to wait for deployed, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Stop an app: remove what it runs (the manifest stays stored).
    Undeploy {
        #[command(flatten)]
        conn: Connection,
        name: String,
    },
    /// Show an app's status, per scaler.
    Status {
        #[command(flatten)]
        conn: Connection,
        name: String,
        /// Keep showing each change until the app is deployed or failed.
        #[arg(long)]
        watch: bool,
    },
    /// List the stored apps.
    List {
        #[command(flatten)]
        conn: Connection,
    },
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not a label: write key=value")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRELLIS_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "info,async_nats=warn,cranelift=warn,wasmtime=warn",
                )
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Up(args) => up(args).await,
        Cmd::Controller(args) => controller(args).await,
        Cmd::Node(args) => node(args).await,
        Cmd::App(cmd) => app(cmd).await,
        Cmd::Plugin(PluginCmd::List { conn }) => plugin_list(conn).await,
        Cmd::Get(GetCmd::Hosts { conn }) => get_hosts(conn).await,
        Cmd::Get(GetCmd::Inventory { conn, host }) => get_inventory(conn, host).await,
        Cmd::Plugin(PluginCmd::New { name, kind, dir }) => {
            let root = trellis_cli::scaffold::new_plugin(&dir, &name, &kind)?;
            println!("created {kind} plugin `{name}` in {}", root.display());
            println!(
                "next:  cd {} && cargo test && cargo build --target wasm32-wasip2 --release",
                root.display()
            );
            Ok(())
        }
    }
}

fn plugin_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
                .count()
        })
        .unwrap_or(0)
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let lattice = args.lattice.clone();
    if plugin_count(&args.plugins) == 0 {
        eprintln!(
            "warning: no plugins in {}: build them with scripts/build-wasm.sh, or pass --plugins DIR",
            args.plugins.display()
        );
    }
    let (nats, nats_url) = match &args.nats {
        Some(url) => (None, url.clone()),
        None => {
            let data = args.data_dir.join("nats");
            let server = NatsServer::start(args.nats_port, &data)
                .context("starting nats-server (pass --nats URL to use a running one)")?;
            let url = server.url();
            (Some(server), url)
        }
    };
    let controller = Controller::start(ControllerConfig {
        nats_url: nats_url.clone(),
        lattices: vec![lattice.clone()],
        plugin_dir: args.plugins.clone(),
        ..ControllerConfig::default()
    })
    .await?;
    let node = Node::start(NodeConfig {
        nats_url: nats_url.clone(),
        lattice: lattice.clone(),
        labels: args.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
        ..NodeConfig::default()
    })
    .await?;
    let plugins = controller.runtime().plugins();
    println!("trellis is up");
    println!(
        "  nats        {nats_url}{}",
        if nats.is_some() {
            format!(" (data in {})", args.data_dir.join("nats").display())
        } else {
            String::new()
        }
    );
    println!("  lattice     {lattice}");
    println!(
        "  controller  plugins from {} ({} loaded: {})",
        args.plugins.display(),
        plugins.by_file.len(),
        plugins
            .by_file
            .values()
            .map(|p| p.name().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  node        {}", node.host_id());
    for (file, problem) in &plugins.problems {
        println!("  plugin problem in {}: {problem}", file.display());
    }

    let manifest = match (&args.example, &args.deploy) {
        (Some(name), _) => {
            let path = PathBuf::from("examples").join(name).join("app.yaml");
            if !path.exists() {
                bail!("example `{name}` not found at {}: run from the repository root, or pass --deploy FILE", path.display());
            }
            Some(path)
        }
        (None, Some(path)) => Some(path.clone()),
        (None, None) => None,
    };
    if let Some(path) = manifest {
        let client = ApiClient::connect(&nats_url, &lattice).await?;
        let name = put_and_deploy(&client, &path, None).await?;
        println!("deploying {name} …");
        client
            .wait_deployed(&name, Duration::from_secs(60), |s| print_progress(&name, s))
            .await?;
        if let Some(address) = http_address(&path) {
            println!("try:  curl http://{address}/");
        }
    }
    println!("press Ctrl-C to stop");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = node.stopped() => {}
    }
    println!("stopping …");
    node.stop().await?;
    controller.stop().await;
    drop(nats);
    println!("stopped");
    Ok(())
}

/// The address an HTTP server link in the manifest serves on, to tell the user what to curl.
fn http_address(path: &std::path::Path) -> Option<String> {
    let manifest = load_manifest_file(path).ok()?;
    manifest
        .spec
        .components
        .iter()
        .flat_map(|c| c.traits.iter().flatten())
        .filter(|t| t.trait_type == "link")
        .flat_map(|t| {
            let source = t
                .properties
                .get("source")
                .and_then(|s| s.get("config"))
                .cloned();
            source
                .and_then(|c| c.as_array().cloned())
                .unwrap_or_default()
        })
        .find_map(|config| {
            config
                .get("properties")?
                .get("address")?
                .as_str()
                .map(|a| a.replace("0.0.0.0", "127.0.0.1"))
        })
}

fn print_progress(name: &str, status: &Status) {
    let state = format!("{:?}", status.info.status_type).to_lowercase();
    if status.info.message.is_empty() {
        println!("  {name}: {state}");
    } else {
        println!("  {name}: {state}: {}", status.info.message);
    }
}

async fn controller(args: ControllerArgs) -> anyhow::Result<()> {
    let mut lattices = vec![args.conn.lattice.clone()];
    lattices.extend(args.also.iter().cloned());
    let mut config = ControllerConfig {
        nats_url: args.conn.nats.clone(),
        lattices,
        plugin_dir: args.plugins.clone(),
        ..ControllerConfig::default()
    };
    config.settings.host_timeout = Duration::from_secs(args.host_timeout);
    if let Some(path) = &args.config {
        let file = trellis_cli::config::ConfigFile::load(path)?;
        let (base, per_plugin) = file.limits()?;
        config.runtime.default_limits = base;
        config.runtime.per_plugin = per_plugin;
        if let Some(dir) = file.plugins.dir {
            config.plugin_dir = dir;
        }
    }
    let controller = Controller::start(config).await?;
    println!("controller running; Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    controller.stop().await;
    Ok(())
}

async fn node(args: NodeArgs) -> anyhow::Result<()> {
    let node = Node::start(NodeConfig {
        nats_url: args.conn.nats.clone(),
        lattice: args.conn.lattice.clone(),
        labels: args.labels.into_iter().collect(),
        heartbeat_interval: Duration::from_secs(args.heartbeat.max(1)),
        friendly_name: args.name,
    })
    .await?;
    println!(
        "node {} joined lattice {}; Ctrl-C to stop",
        node.host_id(),
        args.conn.lattice
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = node.stopped() => {}
    }
    node.stop().await
}

/// Puts a manifest file and deploys the version it holds. Returns the app name.
async fn put_and_deploy(
    client: &ApiClient,
    path: &std::path::Path,
    version: Option<&str>,
) -> anyhow::Result<String> {
    let manifest = load_manifest_file(path)?;
    let name = manifest.name().to_string();
    let put = client.put(&manifest).await?;
    match put.result {
        PutResult::Error if put.message.contains("already has a version") => {}
        PutResult::Error => bail!("{}: {}", path.display(), put.message),
        _ => {}
    }
    let version = version.map(String::from).or_else(|| {
        let v = manifest.version();
        (!v.is_empty()).then(|| v.to_string())
    });
    let deployed = client.deploy(&name, version.as_deref()).await?;
    if deployed.result != DeployResult::Acknowledged {
        bail!("cannot deploy {name}: {}", deployed.message);
    }
    Ok(name)
}

async fn get_hosts(conn: Connection) -> anyhow::Result<()> {
    let client = ApiClient::connect(&conn.nats, &conn.lattice).await?;
    let hosts = client.hosts().await?;
    if conn.output == Output::Json {
        return print_json(&hosts);
    }
    if hosts.is_empty() {
        println!(
            "no hosts answered in lattice `{}`; start one with `trellis node` or `trellis up`",
            conn.lattice
        );
        return Ok(());
    }
    println!("{:<58} {:<20} {:>9}  LABELS", "HOST", "NAME", "UPTIME");
    for h in hosts {
        let labels = h
            .labels
            .iter()
            .filter(|(k, _)| !k.starts_with("hostcore."))
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        println!(
            "{:<58} {:<20} {:>8}s  {labels}",
            h.id, h.friendly_name, h.uptime_seconds
        );
    }
    Ok(())
}

async fn get_inventory(conn: Connection, host: String) -> anyhow::Result<()> {
    let client = ApiClient::connect(&conn.nats, &conn.lattice).await?;
    let hosts = client.hosts().await?;
    let matching: Vec<_> = hosts.iter().filter(|h| h.id.starts_with(&host)).collect();
    let id = match matching.as_slice() {
        [one] => one.id.clone(),
        [] => bail!(
            "no host of lattice `{}` has an id starting with `{host}`; see `trellis get hosts`",
            conn.lattice
        ),
        _ => bail!(
            "`{host}` names {} hosts; give more of the id",
            matching.len()
        ),
    };
    let inventory = client.inventory(&id).await?;
    if conn.output == Output::Json {
        return print_json(&inventory);
    }
    println!("host {} ({})", inventory.host_id, inventory.friendly_name);
    println!("{:<10} {:<28} {:>6}  IMAGE", "KIND", "ID", "COUNT");
    for c in &inventory.components {
        println!(
            "{:<10} {:<28} {:>6}  {}",
            "component", c.id, c.max_instances, c.image_ref
        );
    }
    for p in &inventory.providers {
        println!(
            "{:<10} {:<28} {:>6}  {}",
            "provider",
            p.id,
            "-",
            p.image_ref.clone().unwrap_or_default()
        );
    }
    Ok(())
}

async fn plugin_list(conn: Connection) -> anyhow::Result<()> {
    let client = ApiClient::connect(&conn.nats, &conn.lattice).await?;
    let list = client.plugins().await?;
    if conn.output == Output::Json {
        return print_json(&list);
    }
    println!("plugins in {}", list.plugin_dir);
    println!(
        "{:<16} {:<9} {:<10} {:<24} {:>7} {:>8} {:>8} {:>8}",
        "NAME", "VERSION", "KIND", "TRAITS", "CALLS", "FAILED", "P50", "P99"
    );
    let micros = |v: Option<u64>| v.map(|v| format!("{v}µs")).unwrap_or_else(|| "-".into());
    for p in &list.plugins {
        println!(
            "{:<16} {:<9} {:<10} {:<24} {:>7} {:>8} {:>8} {:>8}",
            p.name,
            p.version,
            p.kind,
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

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn app(cmd: AppCmd) -> anyhow::Result<()> {
    match cmd {
        AppCmd::Put { conn, file } => {
            let manifest = load_manifest_file(&file)?;
            let client = ApiClient::connect(&conn.nats, &conn.lattice).await?;
            let resp = client.put(&manifest).await?;
            if conn.output == Output::Json {
                print_json(&resp)?;
            }
            if resp.result == PutResult::Error {
                bail!("{}: {}", file.display(), resp.message);
            }
            if conn.output == Output::Table {
                println!(
                    "put {} version {} ({} versions stored)",
                    resp.name, resp.current_version, resp.total_versions
                );
            }
            Ok(())
        }
        AppCmd::Deploy {
            conn,
            app,
            version,
            no_wait,
            timeout,
        } => {
            let client = ApiClient::connect(&conn.nats, &conn.lattice).await?;
            let path = PathBuf::from(&app);
            let name = if path.is_file() {
                put_and_deploy(&client, &path, version.as_deref()).await?
            } else {
                let resp = client.deploy(&app, version.as_deref()).await?;
                if resp.result != DeployResult::Acknowledged {
                    bail!("cannot deploy {app}: {}", resp.message);
                }
                app.clone()
            };
            if no_wait {
                println!("deploying {name}");
                return Ok(());
            }
            let json = conn.output == Output::Json;
            let status = client
                .wait_deployed(&name, Duration::from_secs(timeout), |s| {
                    if !json {
                        print_progress(&name, s)
                    }
                })
                .await?;
            if json {
                print_json(&status)?;
            }
            Ok(())
        }
        AppCmd::Undeploy { conn, name } => {
            let client = ApiClient::connect(&conn.nats, &conn.lattice).await?;
            let resp = client.undeploy(&name).await?;
            if resp.result != DeployResult::Acknowledged {
                bail!("cannot undeploy {name}: {}", resp.message);
            }
            println!("{}", resp.message);
            Ok(())
        }
        AppCmd::Status {
            conn,
            name,
            watch: true,
        } => {
            let client = ApiClient::connect(&conn.nats, &conn.lattice).await?;
            let json = conn.output == Output::Json;
            let status = client
                .wait_deployed(&name, Duration::from_secs(24 * 3600), |s| {
                    if json {
                        let _ = print_json(s);
                    } else {
                        print_progress(&name, s);
                        for scaler in &s.scalers {
                            println!(
                                "    {:<28} {:<12} {}",
                                scaler.id,
                                format!("{:?}", scaler.info.status_type).to_lowercase(),
                                scaler.info.message
                            );
                        }
                    }
                })
                .await?;
            let _ = status;
            Ok(())
        }
        AppCmd::Status {
            conn,
            name,
            watch: false,
        } => {
            let client = ApiClient::connect(&conn.nats, &conn.lattice).await?;
            let resp = client.status(&name).await?;
            let Some(status) = resp.status else {
                bail!("{}", resp.message);
            };
            if conn.output == Output::Json {
                return print_json(&status);
            }
            print_progress(&name, &status);
            println!(
                "{:<28} {:<14} {:<12} MESSAGE",
                "SCALER", "COMPONENT", "STATUS"
            );
            for s in &status.scalers {
                println!(
                    "{:<28} {:<14} {:<12} {}",
                    s.id,
                    s.name,
                    format!("{:?}", s.info.status_type).to_lowercase(),
                    s.info.message
                );
            }
            if status.info.status_type == StatusType::Failed {
                std::process::exit(2);
            }
            Ok(())
        }
        AppCmd::List { conn } => {
            let client = ApiClient::connect(&conn.nats, &conn.lattice).await?;
            let apps = client.list().await?;
            if conn.output == Output::Json {
                return print_json(&apps);
            }
            println!("{:<20} {:<14} {:<14} STATUS", "NAME", "LATEST", "DEPLOYED");
            for a in apps {
                println!(
                    "{:<20} {:<14} {:<14} {}",
                    a.name,
                    a.version,
                    a.deployed_version.unwrap_or_else(|| "-".into()),
                    format!("{:?}", a.detailed_status.info.status_type).to_lowercase()
                );
            }
            Ok(())
        }
    }
}
