//! The node's bounds on what components use (`trellis_node::limits`), each met on a real node
//! started with a small limit, against a real `nats-server`, with the hostile fixture
//! (`build/fixtures/hostile.wasm`, from scripts/build-wasm.sh) served by the built-in HTTP
//! server. Each bound promises a clear error or status; these tests hold the node to it.

mod common;

use std::time::{Duration, Instant};

use common::{
    built_wasm, host_inventory, http_get, http_get_until, parse_response, scale_fails, scale_file,
    scale_succeeds, serve_over_http, subscribe_events, LATTICE,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use trellis_bus::nats_server::NatsServer;
use trellis_lattice::annotations;
use trellis_lattice::ctl::ScaleComponentCommand;
use trellis_node::{Limits, Node, NodeConfig};

/// A node with small limits on its own `nats-server`, and a client that hears the lattice's
/// events.
struct TestNode {
    client: async_nats::Client,
    events: async_nats::Subscriber,
    node: Node,
    host_id: String,
    // Dropped last: the node needs the server until it has stopped.
    _nats: NatsServer,
}

impl TestNode {
    async fn start(limits: Limits) -> Self {
        let nats = NatsServer::start_temporary().unwrap();
        let client = async_nats::connect(nats.url()).await.unwrap();
        let events = subscribe_events(&client).await;
        let config = NodeConfig {
            allowed_image_dirs: vec![common::build_dir()],
            limits,
            ..NodeConfig::default()
        };
        let node = common::start_node(&nats, config).await;
        Self {
            client,
            events,
            host_id: node.host_id().to_string(),
            node,
            _nats: nats,
        }
    }

    /// Scales `id` to `count` instances of the hostile fixture and waits for `component_scaled`.
    async fn scale(&mut self, id: &str, count: u32) {
        let cmd = hostile(id, count);
        scale_succeeds(&self.client, &mut self.events, &self.host_id, &cmd).await;
    }

    /// Runs `cmd`, serves it over HTTP on a fresh address and waits until it answers there.
    /// Returns the address.
    async fn serve(&mut self, cmd: ScaleComponentCommand) -> String {
        let id = cmd.component_id.clone();
        scale_succeeds(&self.client, &mut self.events, &self.host_id, &cmd).await;
        let address = serve_over_http(&self.client, &self.host_id, &id, &id).await;
        let (_, body) = http_get_until(&address, "/", |s| s == 200).await;
        assert_eq!(body, "hostile ok");
        address
    }

    async fn stop(self) {
        self.node.stop().await.unwrap();
    }
}

/// `count` instances of the hostile fixture as component `id`.
fn hostile(id: &str, count: u32) -> ScaleComponentCommand {
    scale_file(id, &built_wasm("fixtures/hostile.wasm"), count)
}

/// One `GET` on an open keep-alive connection: (status, body).
async fn get_on(stream: &mut TcpStream, address: &str, path: &str) -> (u16, String) {
    let head = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !response_complete(&raw) {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .expect("the connection stays open");
        assert!(
            n > 0,
            "the connection closed before the answer: {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    }
    parse_response(&String::from_utf8_lossy(&raw))
}

/// Whether `raw` holds a whole response (sized by `Content-Length` or chunked).
fn response_complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let head = head.to_ascii_lowercase();
    if head.contains("transfer-encoding: chunked") {
        return body == "0\r\n\r\n" || body.ends_with("\r\n0\r\n\r\n");
    }
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    body.len() >= length
}

/// Waits up to `within` for the node to close `stream` (end of stream, or a reset); returns
/// how long that took and what was read before.
async fn closed_by_node(stream: &mut TcpStream, within: Duration) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let mut read = Vec::new();
    match tokio::time::timeout(within, stream.read_to_end(&mut read)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(Err(e)) => panic!("reading failed: {e}"),
        Err(_) => panic!(
            "the connection is still open after {within:?} (read {:?})",
            String::from_utf8_lossy(&read)
        ),
    }
    (started.elapsed(), read)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_closes_connections_past_max_connections() {
    let mut node = TestNode::start(Limits {
        max_connections: 2,
        // Idle connections must outlive the test (hyper times out an idle one's headers).
        header_read_timeout: Duration::from_secs(60),
        ..Limits::default()
    })
    .await;
    let address = node.serve(hostile("hostile", 1)).await;
    // The readiness checks' connections end on the node's side just after the client's.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut first = TcpStream::connect(&address).await.unwrap();
    let mut second = TcpStream::connect(&address).await.unwrap();
    let mut third = TcpStream::connect(&address).await.unwrap();
    let (took, read) = closed_by_node(&mut third, Duration::from_secs(5)).await;
    assert!(read.is_empty(), "{:?}", String::from_utf8_lossy(&read));
    assert!(took < Duration::from_secs(2), "closed only after {took:?}");
    for open in [&mut first, &mut second] {
        let (status, body) = get_on(open, &address, "/").await;
        assert_eq!((status, body.as_str()), (200, "hostile ok"));
    }

    // A slot freed is a connection served again.
    drop(first);
    let started = Instant::now();
    let (status, body) = http_get_until(&address, "/", |s| s == 200).await;
    assert_eq!((status, body.as_str()), (200, "hostile ok"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "served again only after {:?}",
        started.elapsed()
    );
    let (status, _) = get_on(&mut second, &address, "/").await;
    assert_eq!(status, 200);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let mut node = TestNode::start(Limits {
        header_read_timeout: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    let address = node.serve(hostile("hostile", 1)).await;

    let mut slow = TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET / HT").await.unwrap();
    let started = Instant::now();
    let (status, body) = http_get(&address, "/").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "hostile ok"));
    closed_by_node(&mut slow, Duration::from_secs(10)).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "closed after {took:?}, with a 1 s header read timeout"
    );
    let (status, _) = http_get(&address, "/").await.unwrap();
    assert_eq!(status, 200);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_past_max_node_instances_fails_and_says_why() {
    let mut node = TestNode::start(Limits {
        max_node_instances: 3,
        ..Limits::default()
    })
    .await;
    node.scale("a", 2).await;
    let error = scale_fails(
        &node.client,
        &mut node.events,
        &node.host_id,
        &hostile("b", 2),
    )
    .await;
    assert!(
        error.contains(
            "scaling b to 2 would run 4 instances on this node, over its limit of 3 (max node instances)"
        ),
        "{error}"
    );
    let running = host_inventory(&node.client, &node.host_id).await;
    let ids: Vec<_> = running.components.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["a"]);

    // Room made is room taken.
    node.scale("a", 1).await;
    node.scale("b", 2).await;
    let running = host_inventory(&node.client, &node.host_id).await;
    let mut counts: Vec<_> = running
        .components
        .iter()
        .map(|c| (c.id.as_str(), c.max_instances))
        .collect();
    counts.sort();
    assert_eq!(counts, [("a", 1), ("b", 2)]);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_max_concurrent_requests_is_refused_at_once() {
    let mut node = TestNode::start(Limits {
        max_concurrent_requests: 1,
        request_timeout: Duration::from_secs(3),
        ..Limits::default()
    })
    .await;
    // Two instances: the one request allowed in flight is the bound, not the scale.
    let address = node.serve(hostile("hostile", 2)).await;

    let looping = {
        let address = address.clone();
        tokio::spawn(async move { http_get(&address, "/loop").await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let (status, body) = http_get(&address, "/").await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("component hostile has 1 requests in flight on this node")
            && body.contains("max concurrent requests"),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "not at once");

    let (status, body) = looping.await.unwrap().unwrap();
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("deadline"), "{body}");
    let (status, body) = http_get(&address, "/").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "hostile ok"));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_is_stopped_and_frees_its_slot() {
    let mut node = TestNode::start(Limits {
        request_timeout: Duration::from_secs(3),
        ..Limits::default()
    })
    .await;
    // One instance: the next request needs the slot the loop held.
    let address = node.serve(hostile("hostile", 1)).await;

    let started = Instant::now();
    let (status, body) = http_get(&address, "/loop").await.unwrap();
    let took = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert!(
        body.contains("did not answer within the request's deadline of 3s and was stopped"),
        "{body}"
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "answered after {took:?}"
    );
    let (status, body) = http_get(&address, "/").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "hostile ok"));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_buckets_are_created_with_kv_bucket_max_bytes() {
    const MAX_BYTES: i64 = 64 << 10;
    let mut node = TestNode::start(Limits {
        kv_bucket_max_bytes: MAX_BYTES,
        ..Limits::default()
    })
    .await;
    // A component of an app gets its app's bucket; one of no app, the lattice's.
    let of_app = ScaleComponentCommand {
        annotations: Some([(annotations::APP.to_string(), "shop".to_string())].into()),
        ..hostile("of-app", 1)
    };
    let served = [
        (
            node.serve(of_app).await,
            format!("trellis-kv-{LATTICE}-shop"),
        ),
        (
            node.serve(hostile("no-app", 1)).await,
            format!("trellis-kv-{LATTICE}"),
        ),
    ];

    let js = async_nats::jetstream::new(node.client.clone());
    for (address, bucket) in served {
        let (status, body) = http_get(&address, "/kv/default").await.unwrap();
        assert_eq!((status, body.as_str()), (200, "1"), "{bucket}");
        let mut stream = js
            .get_stream(format!("KV_{bucket}"))
            .await
            .unwrap_or_else(|e| panic!("no stream for bucket {bucket}: {e}"));
        let info = stream.info().await.unwrap();
        assert_eq!(info.config.max_bytes, MAX_BYTES, "{bucket}");
    }
    node.stop().await;
}
