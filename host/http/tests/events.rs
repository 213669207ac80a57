//! `GET /api/v1/events`: lattice events and status changes arrive as server-sent events.

mod common;

use std::time::Duration;

use common::{echo_yaml, Served};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One server-sent event: its name and its data, parsed as JSON.
struct SseEvent {
    name: String,
    data: serde_json::Value,
}

/// Reads events off an open response, skipping comments (keep-alives) and chunk sizes.
struct EventReader {
    lines: tokio::io::Lines<BufReader<tokio::net::TcpStream>>,
}

impl EventReader {
    async fn open(address: &str) -> Self {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(format!("GET /api/v1/events HTTP/1.1\r\nHost: {address}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut lines = BufReader::new(stream).lines();
        let status = lines.next_line().await.unwrap().unwrap();
        assert!(status.contains(" 200 "), "{status}");
        let mut content_type = String::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.is_empty() {
                break;
            }
            if line.to_ascii_lowercase().starts_with("content-type:") {
                content_type = line;
            }
        }
        assert!(content_type.contains("text/event-stream"), "{content_type}");
        Self { lines }
    }

    async fn next(&mut self) -> SseEvent {
        let mut name = String::new();
        let mut data = String::new();
        loop {
            let line = self
                .lines
                .next_line()
                .await
                .unwrap()
                .expect("the stream stays open");
            if let Some(n) = line.strip_prefix("event:") {
                name = n.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.trim_start());
            } else if line.is_empty() && !data.is_empty() {
                return SseEvent {
                    name,
                    data: serde_json::from_str(&data).unwrap(),
                };
            }
        }
    }

    /// The first event `matches` accepts within `patience`.
    async fn until(
        &mut self,
        patience: Duration,
        what: &str,
        mut matches: impl FnMut(&SseEvent) -> bool,
    ) -> SseEvent {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let event = tokio::time::timeout_at(deadline, self.next())
                .await
                .unwrap_or_else(|_| panic!("no {what} event within {patience:?}"));
            if matches(&event) {
                return event;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_lattice_events_and_status_changes() {
    let served = Served::start(None).await;
    let http = served.http();
    let mut events = EventReader::open(&http.address).await;
    let ready = events
        .until(Duration::from_secs(5), "ready", |e| e.name == "ready")
        .await;
    assert_eq!(ready.data["lattice"], "test");

    // Heartbeats flow without anything being done.
    let heartbeat = events
        .until(Duration::from_secs(5), "heartbeat", |e| {
            e.name == "lattice" && e.data["type"] == "com.wasmcloud.lattice.host_heartbeat"
        })
        .await;
    assert!(heartbeat.data["source"].as_str().unwrap().starts_with('N'));

    assert_eq!(
        http.post("/api/v1/apps", echo_yaml().as_bytes())
            .await
            .status,
        201
    );
    assert_eq!(http.post("/api/v1/apps/echo/deploy", b"").await.status, 200);

    let scaled = events
        .until(Duration::from_secs(20), "component_scaled", |e| {
            e.name == "lattice" && e.data["type"] == "com.wasmcloud.lattice.component_scaled"
        })
        .await;
    assert_eq!(
        scaled.data["data"]["component_id"], "echo-echo",
        "{}",
        scaled.data
    );
    let deployed = events
        .until(Duration::from_secs(20), "status deployed", |e| {
            e.name == "status" && e.data["status"]["status"]["type"] == "deployed"
        })
        .await;
    assert_eq!(deployed.data["app"], "echo");
    assert!(!deployed.data["status"]["scalers"]
        .as_array()
        .unwrap()
        .is_empty());
}
