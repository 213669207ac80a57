//! A resumed KV watch across a real nats-server restart on the same store: it says it was
//! reopened, then delivers what was written after the restart, in order, and nothing it had
//! delivered before.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use futures::StreamExt as _;
use trellis_bus::resume::{self, Resumed};

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

/// The next item of `watch`, within a bound generous for a loaded machine (the reopen itself
/// takes well under a second once the server answers).
async fn next(
    watch: &mut futures::stream::BoxStream<'static, Resumed<kv::Entry>>,
) -> Resumed<kv::Entry> {
    tokio::time::timeout(Duration::from_secs(15), watch.next())
        .await
        .expect("the watch yields within 15 s")
        .expect("a resumed watch never ends")
}

fn entry(input: Resumed<kv::Entry>) -> (String, kv::Operation, Vec<u8>) {
    match input {
        Resumed::Item(e) => (e.key, e.operation, e.value.to_vec()),
        Resumed::Reopened => panic!("expected an entry, got the reopen marker"),
    }
}

#[tokio::test]
async fn a_resumed_kv_watch_sees_writes_made_after_a_server_restart_and_no_replay() {
    let mut nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let store = trellis_bus::open_bucket(&js, "RESUME_TEST", 1)
        .await
        .unwrap();
    store.put("a", "1".into()).await.unwrap();
    store.put("b", "1".into()).await.unwrap();

    let mut watch = resume::kv_watch(&client, store.clone(), None, true);
    assert_eq!(
        entry(next(&mut watch).await),
        ("a".into(), kv::Operation::Put, b"1".to_vec())
    );
    assert_eq!(
        entry(next(&mut watch).await),
        ("b".into(), kv::Operation::Put, b"1".to_vec())
    );

    nats.restart();
    // Another process writes as soon as the server is back, before (or while) this client
    // reconnects: a change to a key already seen, a new key and a delete.
    let writer = async_nats::connect(nats.url()).await.unwrap();
    let writer_js = jetstream::new(writer);
    let written = async {
        loop {
            // JetStream may take a moment to recover its store after the restart.
            if let Ok(other) = writer_js.get_key_value("RESUME_TEST").await {
                if other.put("a", "2".into()).await.is_ok() {
                    other.put("c", "1".into()).await.unwrap();
                    other.delete("b").await.unwrap();
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), written)
        .await
        .expect("JetStream answers within 15 s of the restart");

    // The watch says it was reopened (once, or again if a reopen raced the reconnect), then
    // yields exactly the writes after the restart, in order: `b`'s old value is not delivered
    // again.
    let mut reopened = 0;
    let mut resumed = Vec::new();
    while resumed.len() < 3 {
        match next(&mut watch).await {
            Resumed::Reopened => {
                assert!(
                    resumed.is_empty(),
                    "reopened in the middle of the resumed entries"
                );
                reopened += 1;
            }
            item => resumed.push(entry(item)),
        }
    }
    assert!(
        reopened >= 1,
        "the watch says it was reopened before resuming"
    );
    assert_eq!(resumed[0], ("a".into(), kv::Operation::Put, b"2".to_vec()));
    assert_eq!(resumed[1], ("c".into(), kv::Operation::Put, b"1".to_vec()));
    assert_eq!(
        (resumed[2].0.as_str(), resumed[2].1),
        ("b", kv::Operation::Delete)
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), watch.next())
            .await
            .is_err(),
        "nothing more: no replay of what was seen before the restart"
    );

    // And it keeps following live writes.
    store.put("d", "1".into()).await.unwrap();
    assert_eq!(
        entry(next(&mut watch).await),
        ("d".into(), kv::Operation::Put, b"1".to_vec())
    );
}
