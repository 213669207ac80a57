//! What a scale command may make a node read: file images only from the folders the node was
//! told to allow, regular files only, and no more than the size limit; registry pulls bounded in
//! size before and during the download and in time. Each refusal is a clear
//! `component_scale_failed`, and the node goes on serving.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{built_wasm, next_component_event, scale_fails, send_scale, subscribe_events};
use futures::StreamExt as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Notify;
use trellis_bus::nats_server::NatsServer;
use trellis_lattice::ctl::{self, CtlResponse, Subjects};
use trellis_lattice::event::{self, CloudEvent};
use trellis_node::{Node, NodeConfig};

/// The image size limit of the test nodes: above the echo example, small enough to exceed.
const MAX_BYTES: u64 = 8 << 20;

/// The echo example, built by scripts/build-wasm.sh.
fn echo_wasm() -> PathBuf {
    built_wasm("examples/echo.wasm")
}

async fn start_node(nats: &NatsServer, allowed: &[&Path], pull_timeout: Duration) -> Node {
    common::start_node(
        nats,
        NodeConfig {
            allowed_image_dirs: allowed.iter().map(|dir| dir.to_path_buf()).collect(),
            max_image_bytes: MAX_BYTES,
            image_pull_timeout: pull_timeout,
            ..NodeConfig::default()
        },
    )
    .await
}

/// A connection to the test lattice, subscribed to all its events.
struct Lattice {
    client: async_nats::Client,
    events: async_nats::Subscriber,
    subjects: Subjects,
}

impl Lattice {
    async fn connect(nats: &NatsServer) -> Self {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let events = subscribe_events(&client).await;
        Self {
            client,
            events,
            subjects: Subjects::new(common::LATTICE),
        }
    }

    async fn request<T: DeserializeOwned + Default>(
        &self,
        subject: String,
        body: &impl Serialize,
    ) -> CtlResponse<T> {
        common::request(&self.client, subject, body).await
    }

    /// `component.scale` of `id` to `image` on `host` (one instance).
    fn command(host: &str, id: &str, image: &str) -> ctl::ScaleComponentCommand {
        ctl::ScaleComponentCommand {
            component_ref: image.into(),
            component_id: id.into(),
            max_instances: 1,
            host_id: host.into(),
            ..Default::default()
        }
    }

    /// Sends `component.scale` of `id` to `image` on `host` (one instance); the node accepts
    /// it at once and reports the outcome as an event.
    async fn scale(&self, host: &str, id: &str, image: &str) {
        send_scale(&self.client, host, &Self::command(host, id, image)).await;
    }

    /// The next event of `kind` about component `id`, skipping others.
    async fn next_event(&mut self, kind: &str, id: &str) -> CloudEvent {
        next_component_event(&mut self.events, kind, id).await
    }

    /// Scales `id` to `image` and returns the error its `component_scale_failed` carries.
    async fn scale_fails(&mut self, host: &str, id: &str, image: &str) -> String {
        let cmd = Self::command(host, id, image);
        scale_fails(&self.client, &mut self.events, host, &cmd).await
    }

    /// Whether any event of `kind` about `id` arrives within `window`.
    async fn any_event_within(&mut self, kind: &str, id: &str, window: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, self.events.next()).await {
            let event: CloudEvent = serde_json::from_slice(&msg.payload).unwrap();
            if event.kind() == kind && event.data["component_id"] == id {
                return true;
            }
        }
        false
    }

    /// Asks `host` for its inventory: it answers while it serves.
    async fn answers(&self, host: &str) -> ctl::HostInventory {
        common::host_inventory(&self.client, host).await
    }
}

const NOT_ALLOWED: &str = "is not a file under the node's allowed image folders";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_images_come_only_from_allowed_folders() {
    let echo = echo_wasm();
    let root = tempfile::tempdir().unwrap();
    let allowed = root.path().join("images");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(allowed.join("folder")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::copy(&echo, allowed.join("echo.wasm")).unwrap();
    std::fs::copy(&echo, outside.join("secret.wasm")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.wasm"), allowed.join("link.wasm")).unwrap();
    std::os::unix::fs::symlink("..", allowed.join("up")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", allowed.join("zero.wasm")).unwrap();
    let fifo = allowed.join("fifo.wasm");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // Sparse: one byte over the limit without writing 8 MiB.
    std::fs::File::create(allowed.join("big.wasm"))
        .unwrap()
        .set_len(MAX_BYTES + 1)
        .unwrap();

    let nats = NatsServer::start_temporary().unwrap();
    let mut lattice = Lattice::connect(&nats).await;
    let node = start_node(&nats, &[&allowed], Duration::from_secs(30)).await;
    let host = node.host_id().to_string();
    let file = |path: &Path| format!("file://{}", path.display());

    // Devices and /proc are outside: refused at once, without being opened.
    let started = Instant::now();
    let error = lattice.scale_fails(&host, "zero", "file:///dev/zero").await;
    assert!(error.contains(NOT_ALLOWED), "{error}");
    assert!(error.contains("--allow-images DIR"), "{error}");
    assert!(
        error.contains(&allowed.display().to_string()),
        "names the allowed folders: {error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let error = lattice
        .scale_fails(&host, "environ", "/proc/self/environ")
        .await;
    assert!(error.contains(NOT_ALLOWED), "{error}");

    // Outside, a file that exists and one that does not get the same answer.
    let existing = file(&outside.join("secret.wasm"));
    let missing = file(&outside.join("missing.wasm"));
    let exists_error = lattice.scale_fails(&host, "outside", &existing).await;
    let missing_error = lattice.scale_fails(&host, "outside", &missing).await;
    assert!(exists_error.contains(NOT_ALLOWED), "{exists_error}");
    assert_eq!(
        exists_error.replace(&existing, "IMAGE"),
        missing_error.replace(&missing, "IMAGE")
    );

    // Ways out of the folder: a symlink to a file outside, `..` in the reference, a symlink
    // to the parent, a symlink to a device.
    for (id, image) in [
        ("link", file(&allowed.join("link.wasm"))),
        (
            "dotdot",
            format!("{}/../outside/secret.wasm", file(&allowed)),
        ),
        ("up", file(&allowed.join("up/outside/secret.wasm"))),
        ("zero-link", file(&allowed.join("zero.wasm"))),
    ] {
        let error = lattice.scale_fails(&host, id, &image).await;
        assert!(error.contains(NOT_ALLOWED), "{id}: {error}");
    }

    // Inside the folder: what is not a regular file, what is too large, what is missing.
    for (id, path) in [("fifo", &fifo), ("folder", &allowed.join("folder"))] {
        let error = lattice.scale_fails(&host, id, &file(path)).await;
        assert!(error.contains("is not a regular file"), "{id}: {error}");
    }
    let error = lattice
        .scale_fails(&host, "big", &file(&allowed.join("big.wasm")))
        .await;
    assert!(
        error.contains("larger than this node's image size limit (8 MiB)"),
        "{error}"
    );
    let error = lattice
        .scale_fails(&host, "gone", &file(&allowed.join("gone.wasm")))
        .await;
    assert!(error.contains("does not exist"), "{error}");

    // A good image inside still runs.
    let good = file(&allowed.join("echo.wasm"));
    lattice.scale(&host, "echo", &good).await;
    let scaled = lattice.next_event(event::COMPONENT_SCALED, "echo").await;
    assert_eq!(scaled.data["image_ref"], good.as_str());
    let inventory = lattice.answers(&host).await;
    let ids: Vec<_> = inventory.components.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["echo"]);
    node.stop().await.unwrap();
}

/// A registry on 127.0.0.1 that serves a manifest for every repository, and for its blobs:
/// `huge` declares a 1 TiB layer; `stall` sends headers and a few bytes of its layer, then
/// nothing until released. Records every request path.
struct FakeRegistry {
    address: String,
    requests: Arc<Mutex<Vec<String>>>,
    release: Arc<Notify>,
}

impl FakeRegistry {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(Notify::new());
        let (log, held) = (requests.clone(), release.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(Self::serve(stream, log.clone(), held.clone()));
            }
        });
        Self {
            address,
            requests,
            release,
        }
    }

    fn saw(&self, fragment: &str) -> bool {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .any(|path| path.contains(fragment))
    }

    /// One request per connection (`Connection: close`).
    async fn serve(
        mut stream: tokio::net::TcpStream,
        log: Arc<Mutex<Vec<String>>>,
        release: Arc<Notify>,
    ) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        log.lock().unwrap().push(path.clone());
        let respond = |status: &str, kind: &str, body: &str| {
            format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        };
        let zeros = format!("sha256:{}", "0".repeat(64));
        let answer = if path == "/v2/" {
            respond("200 OK", "application/json", "{}")
        } else if path.contains("/manifests/") {
            let size: u64 = if path.contains("/huge/") {
                1 << 40
            } else {
                100
            };
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.wasm.config.v0+json",
                    "digest": zeros,
                    "size": 2
                },
                "layers": [{
                    "mediaType": "application/wasm",
                    "digest": format!("sha256:{}", "1".repeat(64)),
                    "size": size
                }]
            });
            respond(
                "200 OK",
                "application/vnd.oci.image.manifest.v1+json",
                &manifest.to_string(),
            )
        } else if path.contains("/stall/blobs/") {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 100\r\nConnection: close\r\n\r\n\0asm";
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.flush().await;
            release.notified().await;
            return;
        } else {
            respond("404 Not Found", "application/json", "{}")
        };
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.flush().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_pulls_are_bounded_in_size_and_time() {
    let echo = echo_wasm();
    let images = tempfile::tempdir().unwrap();
    std::fs::copy(&echo, images.path().join("echo.wasm")).unwrap();
    let registry = FakeRegistry::start().await;
    let nats = NatsServer::start_temporary().unwrap();
    let mut lattice = Lattice::connect(&nats).await;
    let impatient = start_node(&nats, &[images.path()], Duration::from_secs(2)).await;
    let patient = start_node(&nats, &[images.path()], Duration::from_secs(600)).await;
    let host = impatient.host_id().to_string();

    // A layer that declares 1 TiB is refused before any of it is asked for.
    let huge = format!("{}/trellis/huge:1", registry.address);
    let error = lattice.scale_fails(&host, "huge", &huge).await;
    assert!(
        error.contains(&format!("cannot pull {huge}"))
            && error.contains("declares 1099511627776 bytes")
            && error.contains("image size limit (8 MiB)"),
        "{error}"
    );
    assert!(registry.saw("/trellis/huge/manifests/"));
    assert!(
        !registry.saw("/trellis/huge/blobs/"),
        "the blob was asked for"
    );

    // A layer that stops arriving is cut off by the pull timeout, with a clear error.
    let stall = format!("{}/trellis/stall:1", registry.address);
    let started = Instant::now();
    let error = lattice.scale_fails(&host, "stall", &stall).await;
    assert!(
        error.contains(&format!("cannot pull {stall}"))
            && error.contains(&format!(
                "registry {} did not deliver the image within 2s",
                registry.address
            )),
        "{error}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2) && started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let pong: CtlResponse<ctl::Host> = lattice
        .request(lattice.subjects.host_ping(), &json!({}))
        .await;
    assert!(pong.success);
    assert_eq!(lattice.answers(&host).await.host_id, host);

    // A pull in progress holds up no newer command for the same component: the newer one
    // runs, and the one it superseded publishes nothing when its pull ends.
    let host = patient.host_id().to_string();
    lattice.scale(&host, "later", &stall).await;
    let pulling = Instant::now();
    while registry
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.contains("/stall/blobs/"))
        .count()
        < 2
    {
        assert!(
            pulling.elapsed() < Duration::from_secs(30),
            "the pull never began"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let good = format!("file://{}", images.path().join("echo.wasm").display());
    lattice.scale(&host, "later", &good).await;
    let scaled = lattice.next_event(event::COMPONENT_SCALED, "later").await;
    assert_eq!(scaled.data["image_ref"], good.as_str());
    registry.release.notify_waiters();
    assert!(
        !lattice
            .any_event_within(
                event::COMPONENT_SCALE_FAILED,
                "later",
                Duration::from_secs(2)
            )
            .await,
        "the superseded command published its failure"
    );
    let inventory = lattice.answers(&host).await;
    assert_eq!(inventory.components.len(), 1);
    assert_eq!(inventory.components[0].image_ref, good);

    impatient.stop().await.unwrap();
    patient.stop().await.unwrap();
}
