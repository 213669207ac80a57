//! A resumed KV watch across a real nats-server restart on the same store: it says it was
//! reopened, then delivers what was written after the restart, in order, and nothing it had
//! delivered before.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::StreamExt as _;
use trellis_bus::nats_server::NatsServer;
use trellis_bus::resume::{self, Resumed};

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
    let mut nats = NatsServer::start_temporary().unwrap();
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

    nats.restart().unwrap();
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
