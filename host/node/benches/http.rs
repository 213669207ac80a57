//! The echo example served over HTTP, several ways, measured in the same run:
//!
//! - **baseline**: the echo component served directly by wasmtime-wasi-http (a hyper server
//!   that gives each request a fresh store and instance, as `wasmtime serve` does);
//! - **node**: a trellis node's built-in HTTP server, echo running on the same node, both in
//!   this process;
//! - **node-process** and **node-before** (only with `BENCH_BEFORE_BIN`): the same as **node**,
//!   served by a `trellis node` child process: node-process runs this tree's binary
//!   (`TRELLIS_BIN`, default `target/release/trellis`), node-before runs `BENCH_BEFORE_BIN`, a
//!   `trellis` built from an older commit. Both are out of process on equal terms, each alone in
//!   its own lattice, so the proc/before column is what the changes between the two cost;
//! - **routed**: a node's HTTP server whose target runs only on another node, so that every
//!   request crosses NATS both ways (the path of a call between components by lattice name).
//!
//! For 1, 4 and 16 concurrent clients (keep-alive connections, each sending its next request
//! when the last answer is in) it prints requests per second and p50/p99 latency:
//!
//!     scripts/build-wasm.sh && cargo bench -p trellis-node --bench http
//!
//! Against an older node, e.g. commit C (the older binary must take `node --nats --lattice
//! --heartbeat`, and must read `file://` images from the repository's `build/`):
//!
//!     git worktree add ../before C && (cd ../before && cargo build --release -p trellis-cli)
//!     cargo build --release -p trellis-cli
//!     BENCH_BEFORE_BIN=../before/target/release/trellis cargo bench -p trellis-node --bench http
//!
//! `BENCH_SECS` sets the seconds per cell (default 3), split into `BENCH_ROUNDS` rounds
//! (default 3) that take turns among the servers, so that a change in the machine's load
//! during the run falls on all of them alike. Needs `nats-server` on the PATH. The load
//! generator shares this process with baseline, node and routed, and this machine's cores with
//! all of them. The child nodes log at `warn` unless `TRELLIS_LOG` says otherwise.

use std::convert::Infallible;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use trellis_bus::nats_server::NatsServer;
use trellis_lattice::ctl::{self, CtlResponse, Link, Subjects};
use trellis_node::{Node, NodeConfig};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

const LATTICE: &str = "bench";
/// The lattices of the two child nodes: one each, so that they never share work.
const PROCESS_LATTICE: &str = "bench-process";
const BEFORE_LATTICE: &str = "bench-before";
const CLIENTS: [usize; 3] = [1, 4, 16];
/// Instances a node may run at once: more than the clients, so the count never queues them.
const MAX_INSTANCES: u32 = 64;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let secs = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let rounds: u32 = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let before_bin = std::env::var_os("BENCH_BEFORE_BIN").map(PathBuf::from);
    let window = Duration::from_secs(secs) / rounds;
    let echo = echo_wasm()?;

    let baseline = serve_baseline(&echo).await?;
    let nats = NatsServer::start_temporary()?;
    let client = async_nats::connect(nats.url()).await?;
    let serving = start_node(&nats).await?;
    let remote = start_node(&nats).await?;
    let local_address = free_address();
    let routed_address = free_address();
    // echo runs on `serving`, reached locally; echo-remote only on `remote`, reached over NATS.
    scale(&client, LATTICE, serving.host_id(), "echo", &echo).await?;
    scale(&client, LATTICE, remote.host_id(), "echo-remote", &echo).await?;
    http_route(
        &client,
        LATTICE,
        serving.host_id(),
        "local",
        "echo",
        &local_address,
    )
    .await?;
    http_route(
        &client,
        LATTICE,
        serving.host_id(),
        "routed",
        "echo-remote",
        &routed_address,
    )
    .await?;

    // Columns in the order they take turns: name and address.
    let mut servers = vec![("baseline", baseline.to_string()), ("node", local_address)];
    let mut children = Vec::new();
    if let Some(before_bin) = &before_bin {
        let image_dir = repository().join("build").canonicalize()?;
        let process = NodeProcess::start(
            &trellis_bin()?,
            &nats.url(),
            PROCESS_LATTICE,
            &["--allow-images".as_ref(), image_dir.as_os_str()],
        )
        .await?;
        // The older binary has no --allow-images: it reads file images from anywhere.
        let before = NodeProcess::start(before_bin, &nats.url(), BEFORE_LATTICE, &[]).await?;
        for (name, node) in [("node-process", &process), ("node-before", &before)] {
            let address = free_address();
            scale(&client, node.lattice, &node.host_id, "echo", &echo).await?;
            http_route(
                &client,
                node.lattice,
                &node.host_id,
                "local",
                "echo",
                &address,
            )
            .await?;
            servers.push((name, address));
        }
        children.extend([process, before]);
    }
    servers.push(("routed (NATS)", routed_address));
    for (_, address) in &servers {
        wait_until_served(address).await?;
    }

    println!("echo over HTTP, {secs} s per cell (BENCH_SECS) in {rounds} rounds (BENCH_ROUNDS)");
    if let Some(before_bin) = &before_bin {
        println!(
            "node-process: {}; node-before: {}",
            trellis_bin()?.display(),
            before_bin.display()
        );
    }
    let mut header = format!("{:>7}", "clients");
    for (name, _) in &servers {
        header += &format!(" | {:>28}", format!("{name} req/s p50 p99"));
    }
    header += &format!(" | {:>9}", "node/base");
    if before_bin.is_some() {
        header += &format!(" | {:>11}", "proc/before");
    }
    println!("{header}");
    let column = |name: &str| servers.iter().position(|(n, _)| *n == name);
    for clients in CLIENTS {
        let mut cells: Vec<Vec<Duration>> = vec![Vec::new(); servers.len()];
        for _ in 0..rounds {
            for (cell, (_, address)) in cells.iter_mut().zip(&servers) {
                cell.extend(load(address, clients, window).await?);
            }
        }
        let measured: Vec<Measured> = cells
            .into_iter()
            .map(|latencies| Measured::from(latencies, window * rounds))
            .collect();
        let ratio = |over: &str, under: &str| match (column(over), column(under)) {
            (Some(over), Some(under)) => {
                Some(100.0 * measured[over].per_second / measured[under].per_second)
            }
            _ => None,
        };
        let mut row = format!("{clients:>7}");
        for cell in &measured {
            row += &format!(" | {}", cell.cells());
        }
        if let Some(percent) = ratio("node", "baseline") {
            row += &format!(" | {percent:>8.0}%");
        }
        if let Some(percent) = ratio("node-process", "node-before") {
            row += &format!(" | {percent:>10.1}%");
        }
        println!("{row}");
    }

    for child in children {
        child.stop().await?;
    }
    serving.stop().await?;
    remote.stop().await?;
    Ok(())
}

/// The repository's root.
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn echo_wasm() -> anyhow::Result<PathBuf> {
    let path = repository().join("build/examples/echo.wasm");
    anyhow::ensure!(
        path.exists(),
        "{} is missing: run scripts/build-wasm.sh first",
        path.display()
    );
    Ok(path.canonicalize()?)
}

fn free_address() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("127.0.0.1:{port}")
}

/// What one cell of the table measured.
struct Measured {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

impl Measured {
    fn cells(&self) -> String {
        format!(
            "{:>8.0} {:>7.0}µs {:>7.0}µs",
            self.per_second,
            self.p50.as_secs_f64() * 1e6,
            self.p99.as_secs_f64() * 1e6
        )
    }
}

impl Measured {
    fn from(mut latencies: Vec<Duration>, elapsed: Duration) -> Self {
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        Measured {
            per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: at(0.50),
            p99: at(0.99),
        }
    }
}

/// `clients` keep-alive connections sending `GET /bench` back to back for `window`; the
/// latency of every request answered.
async fn load(address: &str, clients: usize, window: Duration) -> anyhow::Result<Vec<Duration>> {
    let deadline = Instant::now() + window;
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let address = address.to_string();
            tokio::spawn(async move { client_loop(&address, deadline).await })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    anyhow::ensure!(
        !latencies.is_empty(),
        "no request finished against {address}"
    );
    Ok(latencies)
}

async fn client_loop(address: &str, deadline: Instant) -> anyhow::Result<Vec<Duration>> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let mut stream = BufReader::new(stream);
    let request = format!("GET /bench HTTP/1.1\r\nHost: {address}\r\n\r\n");
    let mut latencies = Vec::new();
    let mut line = String::new();
    while Instant::now() < deadline {
        let started = Instant::now();
        stream.get_mut().write_all(request.as_bytes()).await?;
        let mut length = None;
        let mut status = None;
        loop {
            line.clear();
            anyhow::ensure!(
                stream.read_line(&mut line).await? > 0,
                "{address} closed the connection"
            );
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if status.is_none() {
                status = header.split_whitespace().nth(1).map(str::to_string);
            } else if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        anyhow::ensure!(
            status.as_deref() == Some("200"),
            "{address} answered {status:?}"
        );
        let length = length.ok_or_else(|| anyhow::anyhow!("{address}: no content-length"))?;
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await?;
        latencies.push(started.elapsed());
    }
    Ok(latencies)
}

async fn wait_until_served(address: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client_loop(address, Instant::now() + Duration::from_millis(1)).await {
            Ok(latencies) if !latencies.is_empty() => return Ok(()),
            outcome if Instant::now() > deadline => {
                anyhow::bail!("{address} never served echo: {outcome:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

// --- the baseline: wasmtime-wasi-http alone ---------------------------------------------------

struct BaselineState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl WasiView for BaselineState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for BaselineState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

async fn serve_baseline(wasm: &Path) -> anyhow::Result<SocketAddr> {
    let engine = Engine::new(&Config::new())?;
    let mut linker = Linker::<BaselineState>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    let component = Component::from_file(&engine, wasm)?;
    let pre = ProxyPre::new(linker.instantiate_pre(&component)?)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let pre = pre.clone();
            let service = service_fn(move |request| {
                let pre = pre.clone();
                async move { Ok::<_, Infallible>(handle_baseline(pre, request).await) }
            });
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(address)
}

async fn handle_baseline(
    pre: ProxyPre<BaselineState>,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody> {
    let mut store = Store::new(
        pre.engine(),
        BaselineState {
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
        },
    );
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let req = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, request)
        .expect("a valid request");
    let out = store
        .data_mut()
        .http()
        .new_response_outparam(sender)
        .expect("an outparam");
    tokio::spawn(async move {
        let proxy = pre.instantiate_async(&mut store).await?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, req, out)
            .await
    });
    match receiver.await {
        Ok(Ok(response)) => response,
        outcome => panic!("the baseline echo failed: {outcome:?}"),
    }
}

// --- the nodes ---------------------------------------------------------------------------------

async fn start_node(nats: &NatsServer) -> anyhow::Result<Node> {
    Node::start(NodeConfig {
        nats_url: nats.url(),
        lattice: LATTICE.into(),
        allowed_image_dirs: vec![repository().join("build")],
        ..Default::default()
    })
    .await
}

async fn request(
    client: &async_nats::Client,
    subject: String,
    body: serde_json::Value,
) -> anyhow::Result<()> {
    let reply = client
        .request(subject.clone(), serde_json::to_vec(&body)?.into())
        .await?;
    let reply: CtlResponse<serde_json::Value> = serde_json::from_slice(&reply.payload)?;
    anyhow::ensure!(reply.success, "{subject}: {}", reply.message);
    Ok(())
}

async fn scale(
    client: &async_nats::Client,
    lattice: &str,
    host_id: &str,
    component_id: &str,
    wasm: &Path,
) -> anyhow::Result<()> {
    let cmd = ctl::ScaleComponentCommand {
        component_ref: format!("file://{}", wasm.display()),
        component_id: component_id.into(),
        max_instances: MAX_INSTANCES,
        ..Default::default()
    };
    request(
        client,
        Subjects::new(lattice).component_scale(host_id),
        serde_json::to_value(cmd)?,
    )
    .await
}

/// An HTTP server provider on `host_id` (in `lattice`) listening on `address` for `target`.
async fn http_route(
    client: &async_nats::Client,
    lattice: &str,
    host_id: &str,
    name: &str,
    target: &str,
    address: &str,
) -> anyhow::Result<()> {
    let subjects = Subjects::new(lattice);
    let config = format!("{name}-address");
    request(
        client,
        subjects.config_put(&config),
        json!({ "address": address }),
    )
    .await?;
    let link = Link {
        source_id: "http-server".into(),
        target: target.into(),
        name: name.into(),
        wit_namespace: "wasi".into(),
        wit_package: "http".into(),
        interfaces: vec!["incoming-handler".into()],
        source_config: vec![config],
        target_config: vec![],
    };
    request(client, subjects.link_put(), serde_json::to_value(link)?).await?;
    let start = ctl::StartProviderCommand {
        provider_id: "http-server".into(),
        provider_ref: "builtin:http-server".into(),
        ..Default::default()
    };
    request(
        client,
        subjects.provider_start(host_id),
        serde_json::to_value(start)?,
    )
    .await
}

/// `TRELLIS_BIN`, or this repository's release build of `trellis`.
fn trellis_bin() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("TRELLIS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository().join("target/release/trellis"));
    anyhow::ensure!(
        path.exists(),
        "{} is missing: run `cargo build --release -p trellis-cli`, or set TRELLIS_BIN",
        path.display()
    );
    Ok(path)
}

/// A `trellis node` child process, alone in its lattice; killed if dropped.
struct NodeProcess {
    child: tokio::process::Child,
    host_id: String,
    lattice: &'static str,
}

impl NodeProcess {
    async fn start(
        bin: &Path,
        nats_url: &str,
        lattice: &'static str,
        flags: &[&OsStr],
    ) -> anyhow::Result<Self> {
        let log = std::env::var("TRELLIS_LOG").unwrap_or_else(|_| "warn".into());
        let mut child = tokio::process::Command::new(bin)
            .args(["node", "--nats", nats_url, "--lattice", lattice])
            .args(["--heartbeat", "1"])
            .args(flags)
            .env("TRELLIS_LOG", log)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        // Its first line: "node <host id> joined lattice <lattice>; Ctrl-C to stop".
        let joined = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .with_context(|| format!("{} did not join within 30 s", bin.display()))??
            .with_context(|| format!("{} exited before joining", bin.display()))?;
        let host_id = joined
            .strip_prefix("node ")
            .and_then(|rest| rest.split_whitespace().next())
            .with_context(|| format!("{}: no host id in {joined:?}", bin.display()))?
            .to_string();
        // Read the rest, so that the node never fails to write its last lines.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(NodeProcess {
            child,
            host_id,
            lattice,
        })
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}
