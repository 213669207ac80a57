//! The echo example served over HTTP, three ways, measured in the same run:
//!
//! - **baseline**: the echo component served directly by wasmtime-wasi-http (a hyper server
//!   that gives each request a fresh store and instance, as `wasmtime serve` does);
//! - **node**: a trellis node's built-in HTTP server, echo running on the same node;
//! - **routed**: a node's HTTP server whose target runs only on another node, so that every
//!   request crosses NATS both ways (the path of a call between components by lattice name).
//!
//! For 1, 4 and 16 concurrent clients (keep-alive connections, each sending its next request
//! when the last answer is in) it prints requests per second and p50/p99 latency:
//!
//!     scripts/build-wasm.sh && cargo bench -p trellis-node --bench http
//!
//! `BENCH_SECS` sets the seconds per cell (default 3), split into `BENCH_ROUNDS` rounds
//! (default 3) that take turns among the three servers, so that a change in the machine's load
//! during the run falls on all three alike. Needs `nats-server` on the PATH. Load generator,
//! servers and nodes share this process (and this machine's cores), the same way for each.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
    scale(&client, serving.host_id(), "echo", &echo).await?;
    scale(&client, remote.host_id(), "echo-remote", &echo).await?;
    http_route(&client, serving.host_id(), "local", "echo", &local_address).await?;
    http_route(
        &client,
        serving.host_id(),
        "routed",
        "echo-remote",
        &routed_address,
    )
    .await?;
    for address in [&baseline.to_string(), &local_address, &routed_address] {
        wait_until_served(address).await?;
    }

    println!("echo over HTTP, {secs} s per cell (BENCH_SECS) in {rounds} rounds (BENCH_ROUNDS)");
    println!(
        "{:>7} | {:>26} | {:>26} | {:>26} | {:>10}",
        "clients",
        "baseline req/s p50 p99",
        "node req/s p50 p99",
        "routed (NATS) req/s p50 p99",
        "node/base"
    );
    let addresses = [baseline.to_string(), local_address, routed_address];
    for clients in CLIENTS {
        let mut cells: [Vec<Duration>; 3] = Default::default();
        for _ in 0..rounds {
            for (cell, address) in cells.iter_mut().zip(&addresses) {
                cell.extend(load(address, clients, window).await?);
            }
        }
        let [base, node, routed] =
            cells.map(|latencies| Measured::from(latencies, window * rounds));
        println!(
            "{clients:>7} | {} | {} | {} | {:>9.0}%",
            base.cells(),
            node.cells(),
            routed.cells(),
            100.0 * node.per_second / base.per_second
        );
    }

    serving.stop().await?;
    remote.stop().await?;
    Ok(())
}

fn echo_wasm() -> anyhow::Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../build/examples/echo.wasm");
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
        allowed_image_dirs: vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../../build")],
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
        Subjects::new(LATTICE).component_scale(host_id),
        serde_json::to_value(cmd)?,
    )
    .await
}

/// An HTTP server provider on `host_id` listening on `address` for `target`.
async fn http_route(
    client: &async_nats::Client,
    host_id: &str,
    name: &str,
    target: &str,
    address: &str,
) -> anyhow::Result<()> {
    let subjects = Subjects::new(LATTICE);
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
