//! Simulated hosts answer the control interface through the node's own server, so they make
//! the node's checks: link fields and config names that make valid KV keys, a scale that names
//! no image only for a component already running, and no answer for a host that is not theirs.

use std::time::Duration;

use serde_json::{json, Value};
use trellis_bus::nats_server::NatsServer;
use trellis_lattice::ctl::{CtlResponse, Subjects};
use trellis_sim::{SimConfig, SimLattice};

const LATTICE: &str = "sim-control";

async fn ask(client: &async_nats::Client, subject: String, body: Value) -> CtlResponse<Value> {
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(subject.clone(), body.to_string().into()),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer on {subject}"))
    .unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_hosts_make_the_nodes_checks() {
    let nats = NatsServer::start_temporary().unwrap();
    let sim = SimLattice::start(SimConfig {
        nats_url: nats.url(),
        lattice: LATTICE.into(),
        hosts: 2,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let host = sim.host_ids()[0].clone();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let subjects = Subjects::new(LATTICE);

    let link = |source: &str| {
        json!({
            "source_id": source, "target": "echo", "wit_namespace": "wasi",
            "wit_package": "http", "interfaces": ["incoming-handler"],
        })
    };
    let bad = ask(&client, subjects.link_put(), link("bad id")).await;
    assert!(!bad.success);
    assert!(
        bad.message.contains("invalid link: source_id"),
        "{}",
        bad.message
    );
    let good = ask(&client, subjects.link_put(), link("http")).await;
    assert!(good.success, "{}", good.message);
    let links = ask(&client, subjects.link_get(), json!({})).await;
    assert_eq!(links.response.unwrap().as_array().unwrap().len(), 1);

    let bad = ask(&client, subjects.config_put("bad:name"), json!({"a": "b"})).await;
    assert!(!bad.success);
    assert!(
        bad.message.contains("invalid config name"),
        "{}",
        bad.message
    );
    let missing = ask(&client, subjects.config_get("missing"), json!({})).await;
    assert!(missing.success);
    assert_eq!(missing.message, "config missing not found");

    let no_image = json!({"component_id": "new", "count": 1});
    let refused = ask(&client, subjects.component_scale(&host), no_image).await;
    assert!(!refused.success);
    assert!(
        refused.message.contains("needs a component_ref"),
        "{}",
        refused.message
    );
    assert!(sim.instances("new").is_empty());

    let unset = ask(&client, subjects.label_del(&host), json!({"key": "nope"})).await;
    assert!(unset.success);
    assert_eq!(unset.message, "label nope was not set");

    // A host that is not one of the simulator's: silence, as from a host that is gone.
    let elsewhere = client.request(subjects.host_get("NOTAHOSTOFTHISSIMULATOR"), "".into());
    if let Ok(Ok(answer)) = tokio::time::timeout(Duration::from_millis(500), elsewhere).await {
        panic!("an answer for a host that is not the simulator's: {answer:?}");
    }
}
