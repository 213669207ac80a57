//! The controller's event stream across a real nats-server restart on the same store: its
//! ordered consumer is lost with the server, and the stream reopens itself after the last event
//! read, so the events hosts publish after the restart arrive and none is read twice.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use futures::StreamExt as _;
use trellis_bus::resume::Resumed;
use trellis_controller::reconciler::{event_stream, events_stream, EventMessage};

const LATTICE: &str = "resume";

/// A `nats-server -js` child on a fixed port and store, so it can be restarted in place.
struct NatsServer {
    child: Child,
    port: u16,
    store: tempfile::TempDir,
}

impl NatsServer {
    fn start() -> Self {
        let store = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = spawn(port, store.path());
        Self { child, port, store }
    }

    /// Kills the server as a crash would and starts it again on the same port and store.
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.port, self.store.path());
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(port: u16, store: &Path) -> Child {
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server must be installed to run these tests");
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nats-server did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// The payloads of the next `n` events, skipping reopen markers; and how many markers there were.
async fn read(
    events: &mut BoxStream<'static, Resumed<EventMessage>>,
    n: usize,
) -> (Vec<String>, usize) {
    let mut payloads = Vec::new();
    let mut reopened = 0;
    while payloads.len() < n {
        // Generous for a loaded machine; the reopen itself takes well under a second.
        let next = tokio::time::timeout(Duration::from_secs(15), events.next())
            .await
            .expect("an event within 15 s")
            .expect("the event stream never ends");
        match next {
            Resumed::Item(msg) => payloads.push(String::from_utf8_lossy(&msg.payload).into_owned()),
            Resumed::Reopened => reopened += 1,
        }
    }
    (payloads, reopened)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_resumes_after_a_nats_restart() {
    let mut nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let mut events = event_stream(&js, LATTICE, Duration::from_secs(60))
        .await
        .unwrap();
    let subject = format!("wasmbus.evt.{LATTICE}.host_heartbeat");
    let publish = |body: &'static str| {
        let js = js.clone();
        let subject = subject.clone();
        async move { js.publish(subject, body.into()).await?.await }
    };
    publish("before-1").await.unwrap();
    publish("before-2").await.unwrap();
    let (before, _) = read(&mut events, 2).await;
    assert_eq!(before, ["before-1", "before-2"]);

    nats.restart();
    // A host publishes as soon as JetStream is back (it may take a moment to recover its store).
    let recovered = async {
        while js.get_stream(events_stream(LATTICE)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), recovered)
        .await
        .expect("JetStream answers within 15 s of the restart");
    publish("after-1").await.unwrap();
    publish("after-2").await.unwrap();

    let (after, reopened) = read(&mut events, 2).await;
    assert_eq!(after, ["after-1", "after-2"], "no event twice, none missed");
    assert!(reopened >= 1, "the stream says it was reopened");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), events.next())
            .await
            .is_err(),
        "nothing more: what was read before the restart is not replayed"
    );
}
