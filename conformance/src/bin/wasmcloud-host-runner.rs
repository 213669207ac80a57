//! A wasmCloud 1.x host (the `wasmcloud-host` library of wasmCloud 1.9) with file loading and the
//! built-in HTTP server and client providers switched on, so the conformance suite can run the
//! echo app against it without an OCI registry. Prints `host-id <ID>` once the host is up.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use nkeys::{KeyPair, KeyPairType};
use wasmcloud_host::url::Url;
use wasmcloud_host::wasmbus::{Features, Host, HostConfig};

#[derive(Parser)]
struct Args {
    /// NATS server the host joins (control and RPC).
    #[arg(
        long,
        env = "WASMCLOUD_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats_url: Url,
    /// Lattice name.
    #[arg(long, env = "WASMCLOUD_LATTICE", default_value = "default")]
    lattice: String,
    /// Host labels, `key=value`.
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Seconds between heartbeats (wasmCloud's default is 30).
    #[arg(long, default_value_t = 30)]
    heartbeat_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    trellis_conformance_runners::init_logging();
    let args = Args::parse();
    let labels: HashMap<String, String> = args
        .labels
        .iter()
        .map(|label| {
            let (key, value) = label
                .split_once('=')
                .with_context(|| format!("label {label:?} is not key=value"))?;
            Ok((key.to_string(), value.to_string()))
        })
        .collect::<anyhow::Result<_>>()?;
    // The host keeps its key private; making it here lets the runner print the host's id.
    let host_key = Arc::new(KeyPair::new(KeyPairType::Server));
    let host_id = host_key.public_key();
    let config = HostConfig {
        host_key: Some(host_key),
        ctl_nats_url: args.nats_url.clone(),
        rpc_nats_url: args.nats_url,
        lattice: Arc::from(args.lattice.as_str()),
        labels,
        allow_file_load: true,
        heartbeat_interval: Some(Duration::from_secs(args.heartbeat_secs)),
        experimental_features: Features::new()
            .enable_builtin_http_server()
            .enable_builtin_http_client(),
        ..HostConfig::default()
    };
    let (host, shutdown) = Host::new(config)
        .await
        .context("starting the wasmCloud host")?;
    println!("host-id {host_id}");
    // `shutdown` is the host's way out, not a wait: run until asked to stop (a signal, or
    // `host.stop` over the control interface), then shut down.
    tokio::select! {
        stopped = host.stopped() => { stopped.context("host failed")?; }
        _ = tokio::signal::ctrl_c() => {}
    }
    shutdown.await.context("shutting the host down")
}
