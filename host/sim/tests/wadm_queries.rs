//! Simulated hosts answer what wadm asks of every host, as a node does: `claims.get` (an empty
//! list), auctions (a bid from each host whose labels meet the constraints and where the id
//! does not run yet, silence from the others) and `component.update` (another image, the same
//! count).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use trellis_bus::gather::{gather, Window};
use trellis_bus::nats_server::NatsServer;
use trellis_lattice::ctl::{CtlResponse, Subjects};
use trellis_sim::{SimConfig, SimLattice};

const LATTICE: &str = "sim-wadm";

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

/// The hosts that bid in an auction on `subject`, each ack checked to echo `id_field` = `id`.
async fn bidders(
    client: &async_nats::Client,
    subject: String,
    id_field: &str,
    id: &str,
    constraints: Value,
) -> BTreeSet<String> {
    let body = json!({ id_field: id, "constraints": constraints.clone() });
    let window = Window::fixed(Duration::from_millis(500));
    let replies = gather(client, subject, body.to_string().into_bytes(), window)
        .await
        .unwrap();
    replies
        .iter()
        .map(|reply| {
            let ack: CtlResponse<Value> = serde_json::from_slice(&reply.payload).unwrap();
            assert!(ack.success, "{}", ack.message);
            let ack = ack.response.expect("an ack");
            assert_eq!(ack[id_field], id, "{ack}");
            assert_eq!(ack["constraints"], constraints, "{ack}");
            ack["host_id"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_hosts_answer_claims_auctions_and_updates() {
    let nats = NatsServer::start_temporary().unwrap();
    let sim = SimLattice::start(SimConfig {
        nats_url: nats.url(),
        lattice: LATTICE.into(),
        hosts: 3,
        zones: 3,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let ids = sim.host_ids().to_vec();
    let all: BTreeSet<String> = ids.iter().cloned().collect();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let subjects = Subjects::new(LATTICE);

    // One answer (a queue group), a list, empty.
    let claims = ask(&client, subjects.claims_get(), json!({})).await;
    assert!(claims.success, "{}", claims.message);
    assert_eq!(claims.response, Some(json!([])));

    // Host i carries zone=zone-{i}.
    let auction = |constraints: Value| {
        bidders(
            &client,
            subjects.component_auction(),
            "component_id",
            "echo",
            constraints,
        )
    };
    assert_eq!(auction(json!({})).await, all);
    assert_eq!(
        auction(json!({"zone": "zone-1"})).await,
        BTreeSet::from([ids[1].clone()])
    );
    assert!(auction(json!({"zone": "zone-9"})).await.is_empty());

    let scale =
        json!({"component_id": "echo", "component_ref": "file:///echo-v1.wasm", "count": 3});
    let accepted = ask(&client, subjects.component_scale(&ids[0]), scale).await;
    assert!(accepted.success, "{}", accepted.message);
    // Running on host 0: it bids no more.
    let others: BTreeSet<String> = ids[1..].iter().cloned().collect();
    assert_eq!(auction(json!({})).await, others);

    let provider = |constraints: Value| {
        bidders(
            &client,
            subjects.provider_auction(),
            "provider_id",
            "http",
            constraints,
        )
    };
    assert_eq!(provider(json!({})).await, all);
    let start = json!({"provider_id": "http", "provider_ref": "builtin:http-server"});
    let started = ask(&client, subjects.provider_start(&ids[2]), start).await;
    assert!(started.success, "{}", started.message);
    let first_two: BTreeSet<String> = ids[..2].iter().cloned().collect();
    assert_eq!(provider(json!({})).await, first_two);

    // Update: another image, the same count; refused for a component that does not run there.
    let update = json!({"component_id": "echo", "new_component_ref": "file:///echo-v2.wasm"});
    let accepted = ask(&client, subjects.component_update(&ids[0]), update.clone()).await;
    assert!(accepted.success, "{}", accepted.message);
    assert_eq!(accepted.message, "accepted");
    let inventory = ask(&client, subjects.host_get(&ids[0]), json!({})).await;
    let echo = &inventory.response.unwrap()["components"][0];
    assert_eq!(echo["image_ref"], "file:///echo-v2.wasm");
    assert_eq!(echo["max_instances"], 3);
    let refused = ask(&client, subjects.component_update(&ids[1]), update).await;
    assert!(!refused.success);
    assert!(
        refused.message.contains("component echo"),
        "{}",
        refused.message
    );
    assert!(refused.message.contains(&ids[1]), "{}", refused.message);
}
