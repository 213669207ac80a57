//! `trellis up`: a whole lattice on this machine (nats-server with JetStream, a controller, its
//! nodes and the HTTP API), with an example or a manifest deployed if asked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use trellis_cli::client::{load_manifest_file, ApiClient};
use trellis_cli::nats_server::NatsServer;
use trellis_controller::{Controller, ControllerConfig};
use trellis_node::{Node, NodeConfig};

use super::app::put_and_deploy;
use super::controller::{apply_plugin_settings, serve_http};
use crate::args::UpArgs;
use crate::output::print_progress;

/// Where `up` logs, unless it shows its log live (`--show-logs`).
pub fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.join("up.log")
}

/// `trellis up`: nats-server (unless --nats names one), a controller, the nodes and the HTTP
/// API, and the app asked for; runs until Ctrl-C or until every node was asked to stop.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    // Taken over before anything starts: from here on a stop signal ends what `up` started
    // (nats-server above all) instead of killing `up` alone and orphaning it.
    let mut stop = StopSignals::new()?;
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
        .and_then(Path::parent)
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
        store: args.store.settings(),
        ..ControllerConfig::default()
    };
    apply_plugin_settings(&mut config, &args.conn)?;
    config.runtime.cache_dir = args.cache.dir();
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
    if !args.show_logs {
        println!(
            "  log         {} (--show-logs prints it here)",
            log_path(&args.data_dir).display()
        );
    }
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
        false => match serve_http(&settings, args.http, args.http_token.clone(), None).await {
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

    let mut signalled = false;
    if let Some(path) = manifest {
        let client = ApiClient::connect_with(&settings).await?;
        let name = put_and_deploy(&client, &path, None).await?;
        println!("deploying {name} …");
        let deployed =
            client.wait_deployed(&name, Duration::from_secs(60), |s| print_progress(&name, s));
        tokio::select! {
            deployed = deployed => {
                deployed?;
                match http_address(&path) {
                    Some(address) => println!("  app {name}  deployed; try:  curl http://{address}/"),
                    None => println!("  app {name}  deployed"),
                }
            }
            signal = stop.requested() => {
                println!("{signal} while deploying {name}");
                signalled = true;
            }
        }
    }
    if !signalled {
        println!("press Ctrl-C to stop");
    }
    // A node asked to stop (host.stop) leaves; `up` goes on until Ctrl-C (or SIGTERM, SIGHUP)
    // or no node is left.
    while !signalled && !nodes.is_empty() {
        tokio::select! {
            signal = stop.requested() => {
                println!("{signal}");
                break;
            }
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

/// The signals that stop `up`: Ctrl-C (SIGINT), SIGTERM (how systemd, docker and CI runners
/// stop a process) and SIGHUP (its terminal closed). Each ends everything `up` started.
struct StopSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
                hangup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Waits for one of the signals; says which.
    async fn requested(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => "interrupted",
                _ = self.terminate.recv() => "terminated (SIGTERM)",
                _ = self.hangup.recv() => "hung up (SIGHUP)",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "interrupted"
        }
    }
}

/// How many plugin files (`*.wasm`) `dir` holds.
fn plugin_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
                .count()
        })
        .unwrap_or(0)
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
fn http_address(path: &Path) -> Option<String> {
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
