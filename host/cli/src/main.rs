//! `trellis`: deploy WebAssembly applications onto a lattice of hosts and keep them deployed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use trellis_cli::client::{load_manifest_file, ApiClient};
use trellis_cli::connect::ConnectArgs;
use trellis_cli::failure::{exit_code, Failure, EXIT_CODES_HELP};
use trellis_cli::nats_server::NatsServer;
use trellis_cli::node_flags::NodeFlags;
use trellis_controller::{Controller, ControllerConfig};
use trellis_lattice::api::{DeployResult, PutResult, Status, StatusType};
use trellis_node::{Node, NodeConfig};

mod commands;

#[derive(Parser)]
#[command(
    name = "trellis",
    version,
    about = "Deploy WebAssembly applications onto a lattice of hosts, and keep them deployed",
    long_about = "Deploy WebAssembly applications onto a lattice of hosts joined over NATS, and keep them deployed.\n\n\
Start here:  trellis up --example echo     (a local lattice with an example app)\n\
then:        curl http://127.0.0.1:8080/\n\n\
Scalers, placement policies and validators are WebAssembly plugins loaded from a folder; \
trellis speaks the wadm API and the wasmCloud control interface, so `wash app` works against it.",
    after_help = EXIT_CODES_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args, Clone)]
struct Connection {
    /// Output format: tables for people, JSON for scripts.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    nats: ConnectArgs,
}

impl Connection {
    /// A client of the lattice's controller API, connected with the resolved connection flags.
    async fn client(&self) -> anyhow::Result<ApiClient> {
        ApiClient::connect_with(&self.nats.resolve()?).await
    }
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
    /// Manage applications: put, validate, plan, deploy, status, history, rollback, delete.
    #[command(subcommand)]
    App(AppCmd),
    /// Plugins: what a controller has loaded; create, test and build your own.
    #[command(subcommand)]
    Plugin(PluginCmd),
    /// Look at the lattice: hosts, what runs on them, links and configs.
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
    /// Every link of the lattice: source, target, WIT interfaces and the configs they carry.
    Links {
        #[command(flatten)]
        conn: Connection,
    },
    /// A named config's keys and values; without a name, the names of every config.
    Config {
        #[command(flatten)]
        conn: Connection,
        /// The config's name (as in a manifest's `config: - name: …`).
        name: Option<String>,
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
    /// Build a plugin crate to a component (cargo build --target wasm32-wasip2 --release) and
    /// say where the .wasm is; copy it into the controller's plugin folder to load it.
    Build {
        /// The plugin crate's folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Output format: `json` prints the .wasm path for scripts.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Run a plugin crate's unit tests natively (cargo test): no wasm, no lattice needed.
    Test {
        /// The plugin crate's folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Args)]
#[command(
    after_help = "Without --nats (or TRELLIS_NATS, or [nats] url in the config file), `up` starts its own \
nats-server; with --user/--password that server requires them.\n\n\
A local lattice of three nodes in two regions:\n  \
trellis up --nodes 3 --node-labels region=east --node-labels region=east --node-labels region=west\n\
Every node gets the label node=1..N; --label applies to all nodes, --node-labels (k=v,k=v) to the next one."
)]
struct UpArgs {
    /// Use this NATS server (with JetStream) instead of starting one (--nats), and how to log in.
    #[command(flatten)]
    conn: ConnectArgs,
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
    /// Labels of every local node, as key=value (repeat for several).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// How many nodes to start [default: 1, or as many as --node-labels].
    #[arg(long)]
    nodes: Option<usize>,
    /// Labels of one node, as k=v[,k=v…]: the first use is node 1's, the second node 2's, …
    #[arg(long = "node-labels", value_parser = parse_labels)]
    node_labels: Vec<Vec<(String, String)>>,
    /// Serve the HTTP API and dashboard on this address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8800")]
    http: std::net::SocketAddr,
    /// Serve no HTTP API and dashboard.
    #[arg(long, conflicts_with = "http")]
    no_http: bool,
    /// The token every HTTP API request must carry (`Authorization: Bearer …`); required when
    /// --http is not a loopback address.
    #[arg(long, env = "TRELLIS_HTTP_TOKEN", hide_env_values = true)]
    http_token: Option<String>,
    /// What components may use: file image folders, time, memory, counts, sizes.
    #[command(flatten)]
    sandbox: NodeFlags,
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
    /// Also serve the HTTP API and dashboard of the lattice on this address (e.g. 127.0.0.1:8800).
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// The token every HTTP API request must carry (`Authorization: Bearer …`); required when
    /// --http is not a loopback address.
    #[arg(long, env = "TRELLIS_HTTP_TOKEN", hide_env_values = true)]
    http_token: Option<String>,
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
    /// Run N simulated hosts instead of one real node: they obey the control interface and
    /// publish the same events, but run no wasm (for trying a controller at scale).
    #[arg(long, value_name = "N")]
    simulate: Option<usize>,
    /// What components may use: file image folders, time, memory, counts, sizes.
    #[command(flatten)]
    sandbox: NodeFlags,
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
    /// Print a stored manifest (YAML; -o json for JSON): the latest version, or --version.
    Get {
        #[command(flatten)]
        conn: Connection,
        name: String,
        /// The version to print (default: the latest).
        #[arg(long)]
        version: Option<String>,
    },
    /// List an app's stored versions, oldest first, and which one is deployed.
    Versions {
        #[command(flatten)]
        conn: Connection,
        name: String,
    },
    /// Delete an app with all its versions, or one --version. Deleting the deployed version
    /// undeploys it.
    Delete {
        #[command(flatten)]
        conn: Connection,
        name: String,
        /// Delete only this version.
        #[arg(long)]
        version: Option<String>,
    },
    /// When which version was deployed or undeployed, oldest first.
    History {
        #[command(flatten)]
        conn: Connection,
        name: String,
    },
    /// Show what deploying a version would do now, as a diff; nothing is sent.
    ///
    /// Lines with `+` start, scale or put; lines with `-` stop or delete. Computed by the same
    /// plugin calls as a deploy, against the lattice as the controller sees it now.
    ///
    ///   trellis app put shop-v2.yaml && trellis app plan shop && trellis app deploy shop
    Plan {
        #[command(flatten)]
        conn: Connection,
        name: String,
        /// The version to plan (default: the latest stored).
        #[arg(long)]
        version: Option<String>,
    },
    /// Deploy the version that was deployed before the current one, and wait until deployed.
    ///
    /// The version comes from the deploy history (`trellis app history NAME`).
    Rollback {
        #[command(flatten)]
        conn: Connection,
        name: String,
        /// Return at once instead of waiting until the app is deployed.
        #[arg(long)]
        no_wait: bool,
        /// How long to wait for deployed, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Check a manifest without storing it, with the plugins the controller has loaded: prints
    /// each finding with its place in the manifest and a hint, like a compiler; exits non-zero
    /// when there is an error (`put` would refuse the manifest).
    Validate {
        #[command(flatten)]
        conn: Connection,
        /// The manifest file (YAML or JSON).
        file: PathBuf,
    },
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not a label: write key=value")),
    }
}

/// `k=v,k=v`: one node's labels.
fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| parse_label(part.trim()))
        .collect()
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
            ExitCode::from(exit_code(&e))
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
        Cmd::Get(GetCmd::Links { conn }) => commands::lattice::links(&conn).await,
        Cmd::Get(GetCmd::Config { conn, name }) => {
            commands::lattice::config(&conn, name.as_deref()).await
        }
        Cmd::Plugin(PluginCmd::Build { dir, output }) => commands::plugin::build(&dir, output),
        Cmd::Plugin(PluginCmd::Test { dir }) => commands::plugin::test(&dir),
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
    let mut settings = args.conn.resolve()?;
    let lattice = settings.lattice.clone();
    if !args.no_http {
        trellis_http::check_address(args.http, args.http_token.as_deref(), &lattice)?;
    }
    let node_labels = up_node_labels(&args)?;
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
    // A local lattice runs what is here: the current folder and the manifest's own.
    let mut allowed_image_dirs = vec![std::env::current_dir()
        .context("cannot tell the current folder (images are allowed from it)")?];
    if let Some(folder) = manifest
        .as_deref()
        .and_then(std::path::Path::parent)
        .filter(|folder| !folder.as_os_str().is_empty())
    {
        allowed_image_dirs.push(
            std::path::absolute(folder).with_context(|| {
                format!("cannot tell the manifest's folder {}", folder.display())
            })?,
        );
    }
    if plugin_count(&args.plugins) == 0 {
        eprintln!(
            "warning: no plugins in {}: build them with scripts/build-wasm.sh, or pass --plugins DIR",
            args.plugins.display()
        );
    }
    let nats = if args.conn.url_given()? {
        None
    } else {
        let data = args.data_dir.join("nats");
        // The server we start asks for the same user and password the CLI logs in with.
        let server = match (&settings.user, &settings.password) {
            (Some(user), Some(password)) => {
                NatsServer::start_with_user(args.nats_port, &data, user, password)
            }
            _ => NatsServer::start(args.nats_port, &data),
        }
        .context("starting nats-server (pass --nats URL to use a running one)")?;
        settings.url = server.url();
        Some(server)
    };
    let nats_url = settings.url.clone();
    let mut config = ControllerConfig {
        nats_url: nats_url.clone(),
        lattices: vec![lattice.clone()],
        plugin_dir: args.plugins.clone(),
        ..ControllerConfig::default()
    };
    apply_plugin_settings(&mut config, &args.conn)?;
    let controller = Controller::start_with_options(config, settings.options().await?).await?;
    let many = node_labels.len() > 1;
    let mut nodes = Vec::new();
    for (i, labels) in node_labels.iter().enumerate() {
        let mut node_config = NodeConfig {
            nats_url: nats_url.clone(),
            lattice: lattice.clone(),
            labels: labels.clone(),
            friendly_name: many.then(|| format!("node-{}", i + 1)),
            allowed_image_dirs: allowed_image_dirs.clone(),
            ..NodeConfig::default()
        };
        args.sandbox.apply(&mut node_config);
        let node = Node::start_with_options(node_config, settings.options().await?).await?;
        nodes.push(node);
    }

    let plugins = controller.runtime().plugins();
    println!("trellis is up");
    match &nats {
        Some(_) => println!(
            "  nats        {nats_url} (started here, data in {}; {})",
            args.data_dir.join("nats").display(),
            settings.auth_summary()
        ),
        None => println!("  nats        {nats_url} ({})", settings.auth_summary()),
    }
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
    for (i, (node, labels)) in nodes.iter().zip(&node_labels).enumerate() {
        let labels = labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        println!("  node {:<6} {}  {labels}", i + 1, node.host_id());
    }
    for (file, problem) in &plugins.problems {
        println!("  plugin problem in {}: {problem}", file.display());
    }
    // A taken port costs the dashboard, not the lattice: say so and go on.
    let http = match args.no_http {
        true => None,
        false => match serve_http(&settings, args.http, args.http_token.clone()).await {
            Ok(server) => {
                println!("  dashboard   {}", server.url());
                Some(server)
            }
            Err(e) => {
                eprintln!("warning: no dashboard: {e:#}");
                None
            }
        },
    };

    if let Some(path) = manifest {
        let client = ApiClient::connect_with(&settings).await?;
        let name = put_and_deploy(&client, &path, None).await?;
        println!("deploying {name} …");
        client
            .wait_deployed(&name, Duration::from_secs(60), |s| print_progress(&name, s))
            .await?;
        match http_address(&path) {
            Some(address) => println!("  app {name}  deployed; try:  curl http://{address}/"),
            None => println!("  app {name}  deployed"),
        }
    }
    println!("press Ctrl-C to stop");
    // A node asked to stop (host.stop) leaves; `up` goes on until Ctrl-C or no node is left.
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            i = first_stopped(&nodes) => {
                let node = nodes.remove(i);
                println!("node {} was asked to stop; stopping it", node.host_id());
                node.stop().await?;
                if nodes.is_empty() {
                    break;
                }
            }
        }
    }
    println!("stopping …");
    for node in nodes {
        node.stop().await?;
    }
    if let Some(http) = http {
        http.stop().await;
    }
    controller.stop().await;
    drop(nats);
    println!("stopped");
    Ok(())
}

/// The labels of each node `up` starts: `node=1..N`, then --label (all nodes), then that
/// node's --node-labels.
fn up_node_labels(args: &UpArgs) -> anyhow::Result<Vec<BTreeMap<String, String>>> {
    let count = args.nodes.unwrap_or(args.node_labels.len().max(1));
    if args.node_labels.len() > count {
        bail!(
            "--node-labels is given {} times but --nodes is {count}: give one --node-labels per node at most",
            args.node_labels.len()
        );
    }
    Ok((0..count)
        .map(|i| {
            let mut labels = BTreeMap::from([("node".to_string(), (i + 1).to_string())]);
            labels.extend(args.labels.iter().cloned());
            labels.extend(args.node_labels.get(i).into_iter().flatten().cloned());
            labels
        })
        .collect())
}

/// The index of the first node that is asked to stop; never resolves without nodes.
async fn first_stopped(nodes: &[Node]) -> usize {
    if nodes.is_empty() {
        return std::future::pending().await;
    }
    let stops = nodes.iter().map(|n| Box::pin(n.stopped()));
    futures::future::select_all(stops).await.1
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
    let nats = args.conn.nats.resolve()?;
    let mut lattices = vec![nats.lattice.clone()];
    lattices.extend(args.also.iter().cloned());
    let mut config = ControllerConfig {
        nats_url: nats.url.clone(),
        lattices,
        plugin_dir: args.plugins.clone(),
        ..ControllerConfig::default()
    };
    config.settings.host_timeout = Duration::from_secs(args.host_timeout);
    apply_plugin_settings(&mut config, &args.conn.nats)?;
    let http = match args.http {
        Some(address) => Some(serve_http(&nats, address, args.http_token.clone()).await?),
        None => None,
    };
    let controller = Controller::start_with_options(config, nats.options().await?).await?;
    if let Some(http) = &http {
        println!("HTTP API and dashboard on {}", http.url());
    }
    println!("controller running; Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    if let Some(http) = http {
        http.stop().await;
    }
    controller.stop().await;
    Ok(())
}

/// The config file's `[plugins]` (folder, deadline and memory limits, per plugin or for all),
/// the same for `trellis up` as for `trellis controller`.
fn apply_plugin_settings(config: &mut ControllerConfig, conn: &ConnectArgs) -> anyhow::Result<()> {
    if let Some(file) = conn.config_file()? {
        let (base, per_plugin) = file.limits()?;
        config.runtime.default_limits = base;
        config.runtime.per_plugin = per_plugin;
        if let Some(dir) = file.plugins.dir {
            config.plugin_dir = dir;
        }
    }
    Ok(())
}

/// Serves the HTTP API and dashboard of the lattice (trellis-http) on a NATS connection of its own.
async fn serve_http(
    settings: &trellis_cli::connect::NatsSettings,
    address: std::net::SocketAddr,
    token: Option<String>,
) -> anyhow::Result<trellis_http::HttpServer> {
    let client = settings.connect().await?;
    let config = trellis_http::HttpConfig {
        address,
        token,
        lattice: settings.lattice.clone(),
    };
    trellis_http::HttpServer::start(config, client).await
}

async fn node(args: NodeArgs) -> anyhow::Result<()> {
    let nats = args.conn.nats.resolve()?;
    if let Some(hosts) = args.simulate {
        let sim = trellis_sim::SimLattice::start_with_options(
            trellis_sim::SimConfig {
                nats_url: nats.url.clone(),
                lattice: nats.lattice.clone(),
                hosts,
                heartbeat_interval: Duration::from_secs(args.heartbeat.max(1)),
                labels: args.labels.into_iter().collect(),
                zones: 0,
            },
            nats.options().await?,
        )
        .await?;
        println!(
            "{} simulated hosts joined lattice {}; Ctrl-C to stop",
            sim.running(),
            nats.lattice
        );
        tokio::signal::ctrl_c().await?;
        return sim.stop().await;
    }
    let mut config = NodeConfig {
        nats_url: nats.url.clone(),
        lattice: nats.lattice.clone(),
        labels: args.labels.into_iter().collect(),
        heartbeat_interval: Duration::from_secs(args.heartbeat.max(1)),
        friendly_name: args.name,
        ..NodeConfig::default()
    };
    args.sandbox.apply(&mut config);
    let node = Node::start_with_options(config, nats.options().await?).await?;
    println!(
        "node {} joined lattice {}; Ctrl-C to stop",
        node.host_id(),
        nats.lattice
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
        PutResult::Error => {
            return Err(commands::api_error(format!(
                "{}: {}",
                path.display(),
                put.message
            )))
        }
        _ => {}
    }
    let version = version.map(String::from).or_else(|| {
        let v = manifest.version();
        (!v.is_empty()).then(|| v.to_string())
    });
    let deployed = client.deploy(&name, version.as_deref()).await?;
    if deployed.result != DeployResult::Acknowledged {
        return Err(commands::api_error(format!(
            "cannot deploy {name}: {}",
            deployed.message
        )));
    }
    Ok(name)
}

async fn get_hosts(conn: Connection) -> anyhow::Result<()> {
    let client = conn.client().await?;
    let hosts = client.hosts().await?;
    if conn.output == Output::Json {
        return print_json(&hosts);
    }
    if hosts.is_empty() {
        println!(
            "no hosts answered in lattice `{}`; start one with `trellis node` or `trellis up`",
            client.lattice()
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
    let client = conn.client().await?;
    let hosts = client.hosts().await?;
    let matching: Vec<_> = hosts.iter().filter(|h| h.id.starts_with(&host)).collect();
    let id = match matching.as_slice() {
        [one] => one.id.clone(),
        [] => {
            return Err(Failure::NotFound.error(format!(
                "no host of lattice `{}` has an id starting with `{host}`; see `trellis get hosts`",
                client.lattice()
            )))
        }
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
    let client = conn.client().await?;
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
        AppCmd::Validate { conn, file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read manifest {}", file.display()))?;
            let client = conn.client().await?;
            let response = client.validate(&text).await?;
            if conn.output == Output::Json {
                print_json(&response)?;
            } else {
                print!("{}", trellis_cli::validate::render(&file, &response));
            }
            if !response.valid {
                bail!("{} has errors: `put` would refuse it", file.display());
            }
            Ok(())
        }
        AppCmd::Put { conn, file } => {
            let manifest = load_manifest_file(&file)?;
            let client = conn.client().await?;
            let resp = client.put(&manifest).await?;
            if conn.output == Output::Json {
                print_json(&resp)?;
            }
            if resp.result == PutResult::Error {
                return Err(commands::api_error(format!(
                    "{}: {}",
                    file.display(),
                    resp.message
                )));
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
            let client = conn.client().await?;
            let path = PathBuf::from(&app);
            let name = if path.is_file() {
                put_and_deploy(&client, &path, version.as_deref()).await?
            } else {
                let resp = client.deploy(&app, version.as_deref()).await?;
                if resp.result != DeployResult::Acknowledged {
                    return Err(commands::api_error(format!(
                        "cannot deploy {app}: {}",
                        resp.message
                    )));
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
            let client = conn.client().await?;
            let resp = client.undeploy(&name).await?;
            if resp.result != DeployResult::Acknowledged {
                return Err(commands::api_error(format!(
                    "cannot undeploy {name}: {}",
                    resp.message
                )));
            }
            println!("{}", resp.message);
            Ok(())
        }
        AppCmd::Status {
            conn,
            name,
            watch: true,
        } => {
            let client = conn.client().await?;
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
            let client = conn.client().await?;
            let resp = client.status(&name).await?;
            let Some(status) = resp.status else {
                return Err(commands::api_error(resp.message));
            };
            let failed = status.info.status_type == StatusType::Failed;
            if conn.output == Output::Json {
                print_json(&status)?;
                if failed {
                    return Err(Failure::AppFailed.error(format!("app {name} failed")));
                }
                return Ok(());
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
            if failed {
                return Err(
                    Failure::AppFailed.error(format!("app {name} failed: {}", status.info.message))
                );
            }
            Ok(())
        }
        AppCmd::List { conn } => {
            let client = conn.client().await?;
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
        AppCmd::Get {
            conn,
            name,
            version,
        } => commands::app::get(&conn, &name, version.as_deref()).await,
        AppCmd::Versions { conn, name } => commands::app::versions(&conn, &name).await,
        AppCmd::Delete {
            conn,
            name,
            version,
        } => commands::app::delete(&conn, &name, version.as_deref()).await,
        AppCmd::History { conn, name } => commands::app::history(&conn, &name).await,
        AppCmd::Plan {
            conn,
            name,
            version,
        } => commands::app::plan(&conn, &name, version.as_deref()).await,
        AppCmd::Rollback {
            conn,
            name,
            no_wait,
            timeout,
        } => {
            let timeout = Duration::from_secs(timeout);
            commands::app::rollback(&conn, &name, no_wait, timeout).await
        }
    }
}
