//! `wasi:logging` lands in the node's own `tracing` log, with the component's id as a field.
//! Its own test binary: it installs a global subscriber that captures what is logged.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use trellis_bus::nats_server::{free_port, NatsServer};
use trellis_lattice::ctl::{self, CtlResponse, Link, Subjects};
use trellis_lattice::event;
use trellis_node::{Node, NodeConfig};

const LATTICE: &str = "logtest";

/// Everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

async fn request(client: &async_nats::Client, subject: String, body: serde_json::Value) {
    let reply = client
        .request(subject.clone(), serde_json::to_vec(&body).unwrap().into())
        .await
        .unwrap();
    let reply: CtlResponse<serde_json::Value> = serde_json::from_slice(&reply.payload).unwrap();
    assert!(reply.success, "{subject}: {}", reply.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_logs_carry_the_component_id() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trellis_node=info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../build/examples/kvcounter.wasm");
    assert!(
        wasm.exists(),
        "{} is missing: run scripts/build-wasm.sh first",
        wasm.display()
    );
    let nats = NatsServer::start_temporary().unwrap();
    let url = nats.url();
    let client = async_nats::connect(&url).await.unwrap();
    let mut events = client
        .subscribe(event::all_subjects(LATTICE))
        .await
        .unwrap();
    let node = Node::start(NodeConfig {
        nats_url: url,
        lattice: LATTICE.into(),
        labels: [("region".to_string(), "north".to_string())].into(),
        allowed_image_dirs: vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../../build")],
        ..Default::default()
    })
    .await
    .unwrap();
    let host_id = node.host_id().to_string();
    let subjects = Subjects::new(LATTICE);

    let address = format!("127.0.0.1:{}", free_port().unwrap());
    request(
        &client,
        subjects.config_put("log-http"),
        json!({ "address": address }),
    )
    .await;
    let link = Link {
        source_id: "http-server".into(),
        target: "logged-counter".into(),
        name: "default".into(),
        wit_namespace: "wasi".into(),
        wit_package: "http".into(),
        interfaces: vec!["incoming-handler".into()],
        source_config: vec!["log-http".into()],
        target_config: vec![],
    };
    request(
        &client,
        subjects.link_put(),
        serde_json::to_value(link).unwrap(),
    )
    .await;
    let start = ctl::StartProviderCommand {
        provider_id: "http-server".into(),
        provider_ref: "builtin:http-server".into(),
        ..Default::default()
    };
    request(
        &client,
        subjects.provider_start(&host_id),
        serde_json::to_value(start).unwrap(),
    )
    .await;
    let scale = ctl::ScaleComponentCommand {
        component_ref: format!("file://{}", wasm.canonicalize().unwrap().display()),
        component_id: "logged-counter".into(),
        max_instances: 1,
        ..Default::default()
    };
    request(
        &client,
        subjects.component_scale(&host_id),
        serde_json::to_value(scale).unwrap(),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let msg = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("component_scaled within 60 s")
            .unwrap();
        if msg.subject.ends_with(event::COMPONENT_SCALED) {
            break;
        }
    }

    // One visit: kvcounter logs "visit 1 in region north" at info through wasi:logging.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(&address).await {
            let head = format!("GET / HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
            stream.write_all(head.as_bytes()).await.unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            if answer.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the counter never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.stop().await.unwrap();

    let log = captured.text();
    let line = log
        .lines()
        .find(|line| line.contains("visit 1 in region north"))
        .unwrap_or_else(|| panic!("the component's log line is not in the node's log:\n{log}"));
    assert!(line.contains("INFO"), "{line}");
    assert!(
        line.contains("component_id=\"logged-counter\"")
            || line.contains("component_id=logged-counter"),
        "{line}"
    );
    assert!(line.contains("context=kvcounter"), "{line}");
}
