//! The controller's event stream across a real nats-server restart on the same store: its
//! ordered consumer is lost with the server, and the stream reopens itself after the last event
//! read, so the events hosts publish after the restart arrive and none is read twice.

use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt as _;
use trellis_bus::nats_server::NatsServer;
use trellis_bus::resume::Resumed;
use trellis_controller::reconciler::{event_stream, events_stream, EventMessage};

const LATTICE: &str = "resume";

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
    let mut nats = NatsServer::start_temporary().unwrap();
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

    nats.restart().unwrap();
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
