//! The command line of `trellis`: every command, its flags and its help text. `--help` prints
//! what the doc comments here say, so they are written for the user.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use trellis_cli::client::ApiClient;
use trellis_cli::connect::{parse_domain, ApiArgs, ConnectArgs};
use trellis_cli::failure::EXIT_CODES_HELP;
use trellis_cli::node_flags::NodeFlags;
use trellis_cli::store_flags::StoreFlags;
use trellis_controller::reconciler::SWEEP_INTERVAL;

use crate::output::Output;

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
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

/// Where compiled plugins are kept (`trellis_runtime`'s compile cache).
#[derive(Args, Clone, Debug, Default)]
pub struct PluginCacheArgs {
    /// Folder where compiled plugins are kept, so that a plugin seen before loads without
    /// compiling (a JavaScript or Python plugin carries its interpreter and compiles for
    /// seconds). Default: $XDG_CACHE_HOME/trellis/plugins, or ~/.cache/trellis/plugins.
    #[arg(long, env = "TRELLIS_PLUGIN_CACHE", value_name = "DIR")]
    pub plugin_cache: Option<PathBuf>,
    /// Compile every plugin on every load; keep nothing.
    #[arg(long)]
    pub no_plugin_cache: bool,
}

impl PluginCacheArgs {
    /// The cache folder to use, if any.
    pub fn dir(&self) -> Option<PathBuf> {
        if self.no_plugin_cache {
            return None;
        }
        self.plugin_cache.clone().or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(base.join("trellis").join("plugins"))
        })
    }
}

#[derive(Args, Clone)]
pub struct Connection {
    /// Output format: tables for people, JSON for scripts.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub nats: ConnectArgs,
    #[command(flatten)]
    pub api: ApiArgs,
}

impl Connection {
    /// A client of the lattice's controller API, connected with the resolved connection flags.
    pub async fn client(&self) -> anyhow::Result<ApiClient> {
        Ok(ApiClient::connect_with(&self.nats.resolve()?)
            .await?
            .with_api_prefix(&self.api.api_prefix))
    }
}

/// How a node connects: as [`Connection`], without the API prefix (a node never calls the
/// controller API).
#[derive(Args, Clone)]
pub struct NodeConnection {
    /// Output format: tables for people, JSON for scripts.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub nats: ConnectArgs,
}

#[derive(Subcommand)]
pub enum Cmd {
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
pub enum GetCmd {
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
    /// The lattice as the controller's plugins see it now: hosts with labels, health and
    /// resources, instances, links, configs and traffic. `-o json` writes the state file
    /// `trellis plugin run --state` replays.
    Snapshot {
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
pub enum PluginCmd {
    /// The plugins a controller has loaded, their calls, failures and latency, and the files it
    /// refused (with why).
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Create a plugin project with its tests, ready to build to a component: in Rust (a crate
    /// on trellis-sdk), JavaScript (componentize-js, from npm) or Python (componentize-py,
    /// from PyPI).
    ///
    ///   trellis plugin new myscaler --kind scaler
    ///   cd myscaler && cargo test && cargo build --target wasm32-wasip2 --release
    ///   trellis plugin new mypolicy --kind placement --lang js
    ///   cd mypolicy && npm install && npm test
    ///   trellis plugin new mycheck --kind validator --lang python
    ///   cd mycheck && python3 -m venv .venv && .venv/bin/pip install -r requirements-dev.txt && .venv/bin/python -m pytest
    #[command(verbatim_doc_comment)]
    New {
        /// The plugin's name; for a scaler it is also the trait type it handles.
        name: String,
        /// What the plugin decides: scaler (how many, where), placement (which host), validator.
        #[arg(long, default_value = "scaler")]
        kind: String,
        /// The language: rust, js or python.
        #[arg(long, default_value = "rust")]
        lang: String,
        /// The folder to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Rust: depend on the SDK crate in this folder (a trellis checkout's sdk/) instead of
        /// the registry's trellis-sdk of this trellis's version.
        #[arg(long, value_name = "DIR")]
        sdk_path: Option<PathBuf>,
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
    /// Run a plugin (.wasm, any language) on a lattice state, in the sandbox the controller
    /// uses, and print what it decides: a scaler's status and commands for each trait of its
    /// types in the manifest, a placement plugin's verdicts and scores for each component, the
    /// manifest's findings (every validator and check, this plugin's included), and the cost of
    /// its calls. Exits non-zero if a call of the plugin failed (trap, deadline, memory).
    ///
    ///   trellis get snapshot -o json > state.json        # the state of a running lattice
    ///   trellis plugin run dist/myscaler.wasm --manifest app.yaml --state state.json
    ///   trellis plugin run dist/myscaler.wasm --manifest app.yaml --from-lattice
    #[command(verbatim_doc_comment)]
    Run {
        /// The plugin component (.wasm).
        plugin: PathBuf,
        /// The application manifest (YAML or JSON) whose traits the plugin is run for.
        #[arg(long)]
        manifest: PathBuf,
        /// The lattice state to run on (the JSON of `trellis get snapshot -o json`). Named
        /// `--state` because `--lattice` names a lattice, here as in every command.
        #[arg(
            long,
            required_unless_present = "from_lattice",
            conflicts_with = "from_lattice"
        )]
        state: Option<PathBuf>,
        /// Take the state of the running lattice (asks its controller, as `get snapshot`).
        #[arg(long)]
        from_lattice: bool,
        /// Folder of the other plugins to load beside it (a scaler's rankings call the
        /// placement plugins). Default: build/plugins when it exists.
        #[arg(long, env = "TRELLIS_PLUGINS")]
        plugins: Option<PathBuf>,
        /// Run the pass (or ranking) this many times on the same state, to measure the
        /// plugin's calls (p50, p99); the answer is the same each time.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        repeat: u32,
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        cache: PluginCacheArgs,
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
pub struct UpArgs {
    /// Use this NATS server (with JetStream) instead of starting one (--nats), and how to log in.
    #[command(flatten)]
    pub conn: ConnectArgs,
    /// Port for the nats-server that `up` starts.
    #[arg(long, default_value_t = 4222)]
    pub nats_port: u16,
    /// Folder for NATS data and logs.
    #[arg(long, default_value = ".trellis")]
    pub data_dir: PathBuf,
    /// Folder of plugins (*.wasm); watched for changes.
    #[arg(long, env = "TRELLIS_PLUGINS", default_value = "build/plugins")]
    pub plugins: PathBuf,
    #[command(flatten)]
    pub cache: PluginCacheArgs,
    /// Also put and deploy an example from examples/ (e.g. `echo`).
    #[arg(long)]
    pub example: Option<String>,
    /// Also put and deploy this manifest.
    #[arg(long)]
    pub deploy: Option<PathBuf>,
    /// Labels of every local node, as key=value (repeat for several).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// How many nodes to start [default: 1, or as many as --node-labels].
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Labels of one node, as k=v[,k=v…]: the first use is node 1's, the second node 2's, …
    #[arg(long = "node-labels", value_parser = parse_labels)]
    pub node_labels: Vec<Vec<(String, String)>>,
    /// Serve the HTTP API and dashboard on this address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8800")]
    pub http: std::net::SocketAddr,
    /// Serve no HTTP API and dashboard.
    #[arg(long, conflicts_with = "http")]
    pub no_http: bool,
    /// Print the log (controller, nodes, plugins) here as it happens, instead of into
    /// DATA_DIR/up.log (whose path `up` prints).
    #[arg(long)]
    pub show_logs: bool,
    /// The token every HTTP API request must carry (`Authorization: Bearer …`); required when
    /// --http is not a loopback address.
    #[arg(long, env = "TRELLIS_HTTP_TOKEN", hide_env_values = true)]
    pub http_token: Option<String>,
    /// What components may use: file image folders, time, memory, counts, sizes.
    #[command(flatten)]
    pub sandbox: NodeFlags,
    /// What the controller keeps: versions, history, bucket replicas.
    #[command(flatten)]
    pub store: StoreFlags,
}

#[derive(Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// Folder of plugins (*.wasm); watched for changes.
    #[arg(long, env = "TRELLIS_PLUGINS", default_value = "build/plugins")]
    pub plugins: PathBuf,
    #[command(flatten)]
    pub cache: PluginCacheArgs,
    /// Manage these lattices too (repeat for several).
    #[arg(long = "also-lattice")]
    pub also: Vec<String>,
    /// Seconds without a heartbeat after which a host counts as gone and its work moves
    /// elsewhere. The default (with nodes' 1 s heartbeats) moves a killed node's work within
    /// 5 s; raise both on lattices of thousands of hosts.
    #[arg(long, default_value_t = trellis_lattice::liveness::HOST_TIMEOUT.as_secs())]
    pub host_timeout: u64,
    /// Heartbeats a host may miss in a row before it is suspect: it keeps what it runs, but
    /// new work goes to healthy hosts while any can take it.
    #[arg(long, value_name = "HEARTBEATS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub suspect_after: u32,
    /// Heartbeats in a row, each on time, that make a suspect host healthy again (a host whose
    /// heartbeats come and go stays suspect).
    #[arg(long, value_name = "HEARTBEATS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub healthy_after: u32,
    /// Seconds between sweeps for orphaned instances: what trellis started for an app that is
    /// no longer deployed, or no longer declares it (its cleanup lost to a crash or a failed
    /// stop), is stopped. Instances trellis did not start, and those of an app undeployed
    /// non-destructively, are left alone.
    #[arg(long, value_name = "SECS", default_value_t = SWEEP_INTERVAL.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub sweep_interval: u64,
    /// Also serve the HTTP API and dashboard of the lattice on this address (e.g. 127.0.0.1:8800).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,
    /// The token every HTTP API request must carry (`Authorization: Bearer …`); required when
    /// --http is not a loopback address.
    #[arg(long, env = "TRELLIS_HTTP_TOKEN", hide_env_values = true)]
    pub http_token: Option<String>,
    /// JetStream domain of the controller's buckets and streams (wadm's -d), when its
    /// JetStream is in another domain than the server it connects to (a leaf node's hub).
    #[arg(short = 'd', long = "domain", env = "TRELLIS_JETSTREAM_DOMAIN", value_name = "DOMAIN",
          value_parser = parse_domain)]
    pub domain: Option<String>,
    /// What the controller keeps: versions, history, bucket replicas.
    #[command(flatten)]
    pub store: StoreFlags,
}

#[derive(Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub conn: NodeConnection,
    /// Labels of this node, as key=value (repeat for several). Placement uses them.
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// A TOML file saying what this device has (sensors, accelerators, …), advertised as
    /// labels: `[sensors] temperature = true` gives `sensors.temperature=true`, which a
    /// manifest's spread can require. --label wins over the file on the same key.
    #[arg(long, value_name = "FILE", env = "TRELLIS_DEVICE")]
    pub device: Option<PathBuf>,
    /// Seconds between heartbeats (controllers call a host gone after --host-timeout, 3 s by
    /// default, without one).
    #[arg(long, default_value_t = trellis_lattice::liveness::HEARTBEAT_INTERVAL.as_secs())]
    pub heartbeat: u64,
    /// A human-friendly name for this node.
    #[arg(long)]
    pub name: Option<String>,
    /// Run N simulated hosts instead of one real node: they obey the control interface and
    /// publish the same events, but run no wasm (for trying a controller at scale).
    #[arg(long, value_name = "N")]
    pub simulate: Option<usize>,
    /// What components may use: file image folders, time, memory, counts, sizes.
    #[command(flatten)]
    pub sandbox: NodeFlags,
    /// JetStream domain of the lattice's buckets (links, configs, key-value), when it is not
    /// the server's own (a leaf node whose hub keeps them); the same as the controllers' -d.
    #[arg(short = 'd', long = "domain", env = "TRELLIS_JETSTREAM_DOMAIN", value_name = "DOMAIN",
          value_parser = parse_domain)]
    pub domain: Option<String>,
}

#[derive(Subcommand)]
pub enum AppCmd {
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
    ///
    /// With --keep-running, stop managing it instead and leave what it runs in place (wadm's
    /// non-destructive undeploy): nothing is stopped, and nothing is repaired or moved either.
    Undeploy {
        #[command(flatten)]
        conn: Connection,
        name: String,
        /// Leave what the app runs in place; only stop managing it.
        #[arg(long)]
        keep_running: bool,
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
    /// Follow, promote or abort a rollout: a deploy of a version whose manifest has a
    /// `rollout` policy (canary, blue-green) moves the app to it in steps.
    ///
    ///   trellis app deploy shop-v2.yaml          # starts the rollout and follows it
    ///   trellis app rollout status shop --watch  # the step, the weights, the analysis
    ///   trellis app rollout promote shop         # past a step waiting for a person
    ///   trellis app rollout abort shop           # every request back to the old version
    #[command(subcommand)]
    Rollout(RolloutCmd),
    /// Check a manifest without storing it, with the plugins the controller has loaded (or,
    /// offline, those of --plugins DIR): prints each finding with its place in the manifest and
    /// a hint, like a compiler; exits non-zero when there is an error (`put` would refuse the
    /// manifest). In an app repository's CI:  trellis app validate app.yaml --plugins plugins/
    Validate {
        #[command(flatten)]
        conn: Connection,
        /// The manifest file (YAML or JSON).
        file: PathBuf,
        /// Validate offline with the plugins of this folder (the controller's checks, run
        /// here): no NATS, no controller. Without it, the running controller validates.
        #[arg(long)]
        plugins: Option<PathBuf>,
        #[command(flatten)]
        cache: PluginCacheArgs,
    },
}

#[derive(Subcommand)]
pub enum RolloutCmd {
    /// Show the app's rollout (the current or last one): its step, the share of requests and
    /// instances of each version, both versions' figures and why it stands where it does.
    Status {
        #[command(flatten)]
        conn: Connection,
        name: String,
        /// Keep printing each step until the rollout is done or rolled back.
        #[arg(long)]
        watch: bool,
    },
    /// Let a rollout waiting for a person (`promotion: manual`, `switch: manual`) go on.
    Promote {
        #[command(flatten)]
        conn: Connection,
        name: String,
    },
    /// Stop a rollout: every request goes back to the old version at once, then the new
    /// version is removed.
    Abort {
        #[command(flatten)]
        conn: Connection,
        name: String,
        /// Why, for the record (shown by `rollout status`).
        #[arg(long)]
        reason: Option<String>,
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
