//! What the node's integration tests share: a node on the test lattice, the control interface
//! driven with a raw NATS client (as the controller or `wash` drive it), the lattice's events,
//! and a bare HTTP/1.1 client for what the node serves.
//!
//! Each test binary has its own `nats-server`, so they all use one lattice name.

// Each test binary uses only some of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use trellis_bus::nats_server::{free_port, NatsServer};
use trellis_lattice::ctl::{self, CtlResponse, Link, Subjects};
use trellis_lattice::event::{self, CloudEvent};
use trellis_node::{Node, NodeConfig};

pub const LATTICE: &str = "nodetest";
/// Generous: the first scale compiles the component in a debug build on a busy machine.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The repository's `build` folder, where scripts/build-wasm.sh puts the components.
pub fn build_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../build")
}

/// A component built by scripts/build-wasm.sh, e.g. `examples/echo.wasm`.
pub fn built_wasm(relative: &str) -> PathBuf {
    let path = build_dir().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-wasm.sh first",
        path.display()
    );
    path.canonicalize().unwrap()
}

/// Starts a node on the test lattice of `nats` with the rest of `config`.
pub async fn start_node(nats: &NatsServer, config: NodeConfig) -> Node {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "trellis_node=info".into()),
        )
        .with_test_writer()
        .try_init();
    Node::start(NodeConfig {
        nats_url: nats.url(),
        lattice: LATTICE.into(),
        ..config
    })
    .await
    .expect("node starts")
}

/// Subscribes to every event of the test lattice, and returns once the server has the
/// subscription (a request the server itself answers is a round trip; `flush` is not).
pub async fn subscribe_events(client: &async_nats::Client) -> async_nats::Subscriber {
    let events = client
        .subscribe(event::all_subjects(LATTICE))
        .await
        .unwrap();
    let _ = client.request(client.new_inbox(), "".into()).await;
    events
}

/// A control-interface request and its decoded reply.
pub async fn request<T: DeserializeOwned + Default>(
    client: &async_nats::Client,
    subject: String,
    body: &impl Serialize,
) -> CtlResponse<T> {
    let payload = serde_json::to_vec(body).unwrap();
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(subject.clone(), payload.into()),
    )
    .await
    .unwrap_or_else(|_| panic!("no reply on {subject}"))
    .unwrap_or_else(|e| panic!("request on {subject} failed: {e}"));
    serde_json::from_slice(&reply.payload).unwrap_or_else(|e| {
        panic!(
            "bad reply on {subject}: {e}: {}",
            String::from_utf8_lossy(&reply.payload)
        )
    })
}

/// The next event of `kind` for which `accept` holds, skipping others.
pub async fn next_event(
    events: &mut async_nats::Subscriber,
    kind: &str,
    accept: impl Fn(&serde_json::Value) -> bool,
) -> CloudEvent {
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let msg = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} event within {EVENT_TIMEOUT:?}"))
            .expect("event subscription open");
        let event: CloudEvent = serde_json::from_slice(&msg.payload).expect("a CloudEvent");
        if event.kind() == kind && accept(&event.data) {
            return event;
        }
    }
}

/// The next event of `kind` about component `id`.
pub async fn next_component_event(
    events: &mut async_nats::Subscriber,
    kind: &str,
    id: &str,
) -> CloudEvent {
    next_event(events, kind, |data| data["component_id"] == id).await
}

/// `component.scale` of `id` to `count` instances of the file image `wasm`.
pub fn scale_file(id: &str, wasm: &Path, count: u32) -> ctl::ScaleComponentCommand {
    ctl::ScaleComponentCommand {
        component_ref: format!("file://{}", wasm.display()),
        component_id: id.into(),
        max_instances: count,
        ..Default::default()
    }
}

/// Sends `cmd` as `component.scale` to `host_id`, which accepts it at once and reports the
/// outcome as an event.
pub async fn send_scale(
    client: &async_nats::Client,
    host_id: &str,
    cmd: &ctl::ScaleComponentCommand,
) {
    let accepted: CtlResponse<()> =
        request(client, Subjects::new(LATTICE).component_scale(host_id), cmd).await;
    assert!(accepted.success, "{}", accepted.message);
}

/// Sends `cmd` and returns its `component_scaled` event.
pub async fn scale_succeeds(
    client: &async_nats::Client,
    events: &mut async_nats::Subscriber,
    host_id: &str,
    cmd: &ctl::ScaleComponentCommand,
) -> CloudEvent {
    send_scale(client, host_id, cmd).await;
    next_component_event(events, event::COMPONENT_SCALED, &cmd.component_id).await
}

/// Sends `cmd` and returns the error its `component_scale_failed` event carries.
pub async fn scale_fails(
    client: &async_nats::Client,
    events: &mut async_nats::Subscriber,
    host_id: &str,
    cmd: &ctl::ScaleComponentCommand,
) -> String {
    send_scale(client, host_id, cmd).await;
    let failed =
        next_component_event(events, event::COMPONENT_SCALE_FAILED, &cmd.component_id).await;
    failed.data["error"].as_str().unwrap().to_string()
}

/// `host.get`: what `host_id` runs.
pub async fn host_inventory(client: &async_nats::Client, host_id: &str) -> ctl::HostInventory {
    let inventory: CtlResponse<ctl::HostInventory> =
        request(client, Subjects::new(LATTICE).host_get(host_id), &json!({})).await;
    inventory.response.expect("an inventory")
}

pub async fn put_config(client: &async_nats::Client, name: &str, values: serde_json::Value) {
    let put: CtlResponse<()> =
        request(client, Subjects::new(LATTICE).config_put(name), &values).await;
    assert!(put.success, "{}", put.message);
}

pub async fn put_link(client: &async_nats::Client, link: &Link) {
    let put: CtlResponse<()> = request(client, Subjects::new(LATTICE).link_put(), link).await;
    assert!(put.success, "{}", put.message);
}

/// A `wasi:http` `incoming-handler` link from the built-in HTTP server to `target`, listening
/// where the config `source_config` says.
pub fn http_link(source_config: &str, target: &str) -> Link {
    Link {
        source_id: "http-server".into(),
        target: target.into(),
        name: "default".into(),
        wit_namespace: "wasi".into(),
        wit_package: "http".into(),
        interfaces: vec!["incoming-handler".into()],
        source_config: vec![source_config.into()],
        target_config: vec![],
    }
}

/// Starts the built-in HTTP server provider (`http-server`) on `host_id`.
pub async fn start_http_server(client: &async_nats::Client, host_id: &str) {
    let start = ctl::StartProviderCommand {
        provider_id: "http-server".into(),
        provider_ref: "builtin:http-server".into(),
        host_id: host_id.into(),
        ..Default::default()
    };
    let started: CtlResponse<()> = request(
        client,
        Subjects::new(LATTICE).provider_start(host_id),
        &start,
    )
    .await;
    assert!(started.success, "{}", started.message);
}

/// Serves `target` over HTTP from the built-in HTTP server on `host_id`, through a link named
/// `link_name`, on a fresh address. Returns the address (its listener opens asynchronously).
pub async fn serve_over_http(
    client: &async_nats::Client,
    host_id: &str,
    link_name: &str,
    target: &str,
) -> String {
    let address = format!("127.0.0.1:{}", free_port().unwrap());
    let config = format!("{link_name}-address");
    put_config(client, &config, json!({ "address": address })).await;
    let link = Link {
        name: link_name.into(),
        ..http_link(&config, target)
    };
    put_link(client, &link).await;
    start_http_server(client, host_id).await;
    address
}

/// `GET http://{address}{path}` with a bare HTTP/1.1 client: (status, body).
pub async fn http_get(address: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    Ok(parse_response(&String::from_utf8_lossy(&raw)))
}

/// A whole HTTP/1.1 response as (status, body); 0 when there is no status line.
pub fn parse_response(text: &str) -> (u16, String) {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    )
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `GET` until `done` holds for the answer (listeners open asynchronously).
pub async fn http_get_until(
    address: &str,
    path: &str,
    done: impl Fn(u16) -> bool,
) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = http_get(address, path).await;
        if let Ok((status, body)) = &answer {
            if done(*status) {
                return (*status, body.clone());
            }
        }
        assert!(
            Instant::now() < deadline,
            "GET {address}{path} never got the expected answer; last: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
