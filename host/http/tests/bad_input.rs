//! What bad input costs the HTTP side (issue 16): a request body the controller's API could not
//! take is refused with a 413 that names the limit before anything goes on NATS, and the
//! dashboard's files carry the headers that keep injected markup and other sites out of the
//! page. (That the page writes hostile strings as text is `browser.rs`'s hostile test.)
//!
//! A real nats-server and a stand-in controller: a subscriber that counts what reaches it.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trellis_cli::nats_server::NatsServer;
use trellis_http::dashboard::CONTENT_SECURITY_POLICY;
use trellis_http::gateway::MAX_BODY_BYTES;
use trellis_http::{HttpConfig, HttpServer};
use trellis_lattice::api::Subjects;

const LATTICE: &str = "test";

struct Served {
    _dir: tempfile::TempDir,
    _nats: NatsServer,
    server: HttpServer,
    /// Sizes of the bodies that reached the stand-in controller.
    received: Arc<std::sync::Mutex<Vec<usize>>>,
    answered: Arc<AtomicUsize>,
}

impl Served {
    /// The HTTP API over a nats-server started with `nats_args`, and a stand-in controller
    /// that answers every `wadm.api` / `trellis.api` request of the lattice with `created`.
    async fn start(nats_args: Vec<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let nats = NatsServer::start_with_args(0, &dir.path().join("nats"), nats_args).unwrap();
        let client = async_nats::connect(nats.url()).await.unwrap();
        let subjects = Subjects::new(LATTICE);
        let received: Arc<std::sync::Mutex<Vec<usize>>> = Arc::default();
        let answered = Arc::new(AtomicUsize::new(0));
        for subject in [
            subjects.model_wildcard(),
            format!("trellis.api.{LATTICE}.>"),
        ] {
            let mut requests = client.subscribe(subject).await.unwrap();
            let (client, received, answered) = (client.clone(), received.clone(), answered.clone());
            tokio::spawn(async move {
                while let Some(request) = requests.next().await {
                    received.lock().unwrap().push(request.payload.len());
                    if let Some(reply) = request.reply {
                        let answer = br#"{"result":"created","message":"stored"}"#;
                        client.publish(reply, answer.as_ref().into()).await.unwrap();
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
        client.flush().await.unwrap();
        let server = HttpServer::start(
            HttpConfig {
                address: "127.0.0.1:0".parse().unwrap(),
                token: None,
                lattice: LATTICE.into(),
                api_prefix: None,
            },
            client,
        )
        .await
        .unwrap();
        Self {
            _dir: dir,
            _nats: nats,
            server,
            received,
            answered,
        }
    }

    fn http(&self) -> common::Http {
        common::Http {
            address: self.server.address().to_string(),
            token: None,
        }
    }

    /// Sends only the head of a request announcing `length` bytes and waiting for
    /// `100 Continue` before its body, as curl does with a large upload; returns the status
    /// line and the rest of the answer.
    async fn announce(&self, path: &str, length: usize) -> String {
        let mut stream = tokio::net::TcpStream::connect(self.server.address())
            .await
            .unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: {length}\r\n\r\n",
            self.server.address()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("an answer without the body")
            .unwrap();
        String::from_utf8(answer).unwrap()
    }

    /// Sends `size` bytes as a chunked body (no length said up front).
    async fn chunked(&self, path: &str, size: usize) -> String {
        let mut stream = tokio::net::TcpStream::connect(self.server.address())
            .await
            .unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
            self.server.address()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b'#'; 64 << 10];
        let mut sent = 0;
        while sent < size {
            let n = chunk.len().min(size - sent);
            let frame = [format!("{n:x}\r\n").as_bytes(), &chunk[..n], b"\r\n"].concat();
            // The server may answer and stop reading once the body passes the limit.
            if stream.write_all(&frame).await.is_err() {
                break;
            }
            sent += n;
        }
        let _ = stream.write_all(b"0\r\n\r\n").await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("an answer");
        String::from_utf8_lossy(&answer).into_owned()
    }
}

fn body_of(answer: &str) -> serde_json::Value {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_gets_a_413_and_never_reaches_nats() {
    let served = Served::start(Vec::new()).await;
    let http = served.http();
    let over = vec![b'#'; MAX_BODY_BYTES + 1];

    // Sent whole, to every endpoint that takes a body.
    for path in [
        "/api/v1/apps",
        "/api/v1/validate",
        "/api/v1/apps/big/deploy",
        "/api/v1/apps/big/undeploy",
    ] {
        let answer = http.post(path, &over).await;
        assert_eq!(answer.status, 413, "{path}: {}", answer.body);
        let message = answer.json()["error"].as_str().unwrap().to_string();
        assert!(
            message.contains(&format!(
                "the request body is {} bytes, over the limit of {MAX_BODY_BYTES} bytes",
                MAX_BODY_BYTES + 1
            )) && message.contains("NATS carries at most 1 MiB")
                && message.contains("split"),
            "{path}: {message}"
        );
    }

    // Announced with `Expect: 100-continue`: refused on the head alone, the body never sent.
    let answer = served.announce("/api/v1/apps", 50 << 20).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        body_of(&answer)["error"]
            .as_str()
            .unwrap()
            .contains(&format!("{} bytes, over the limit", 50 << 20)),
        "{answer}"
    );

    // Chunked, so no length up front: refused once the body passes the limit.
    let answer = served.chunked("/api/v1/apps", 2 * MAX_BODY_BYTES).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        body_of(&answer)["error"]
            .as_str()
            .unwrap()
            .contains(&format!("over the limit of {MAX_BODY_BYTES} bytes")),
        "{answer}"
    );

    assert!(
        served.received.lock().unwrap().is_empty(),
        "an oversized body reached NATS: {:?}",
        served.received.lock().unwrap()
    );

    // At the limit exactly, the body goes through whole (NATS's default max_payload is the
    // same 1 MiB), and the controller's answer comes back.
    let at_limit = vec![b'#'; MAX_BODY_BYTES];
    let answer = http.post("/api/v1/apps", &at_limit).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(*served.received.lock().unwrap(), vec![MAX_BODY_BYTES]);
    assert_eq!(served.answered.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_with_a_lower_max_payload_is_named_in_the_413() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nats.conf");
    std::fs::write(&config, "max_payload: 65536\n").unwrap();
    let served = Served::start(vec!["-c".into(), config.display().to_string()]).await;
    let answer = served.http().post("/api/v1/apps", &[b'#'; 70_000]).await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    let message = answer.json()["error"].as_str().unwrap().to_string();
    assert!(
        message.contains("the request body is 70000 bytes, over the limit of 65536 bytes")
            && message.contains(&format!("the NATS server of lattice `{LATTICE}`"))
            && message.contains("max_payload"),
        "{message}"
    );
    assert!(served.received.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_files_carry_the_security_headers() {
    let served = Served::start(Vec::new()).await;
    let http = served.http();
    for path in ["/", "/dashboard.js", "/map.js", "/dashboard.css"] {
        let answer = http.get(path).await;
        assert_eq!(answer.status, 200, "{path}");
        let header = |name: &str| {
            answer
                .header(name)
                .unwrap_or_else(|| panic!("{path} has no {name}:\n{}", answer.head))
        };
        let policy = header("content-security-policy");
        assert_eq!(policy, CONTENT_SECURITY_POLICY, "{path}");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(
                policy.split(';').any(|d| d.trim() == directive),
                "{path}: `{directive}` missing from {policy}"
            );
        }
        assert!(!policy.contains("unsafe"), "{path}: {policy}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
    }
}
