//! Placement from a shortlist, end to end: a controller whose rankings look at a few hosts at a
//! time (`Shortlist`), the built spreadscaler and default placement plugins, and simulated
//! hosts. A spread of many instances still gets a host per instance (the scaler asks again,
//! `rank_at_least`), providers never land twice on a host, and apps placed one after another
//! walk the lattice rather than crowd its first hosts.

use std::time::Duration;

use trellis_bus::nats_server::NatsServer;
use trellis_controller::{Controller, ControllerConfig, LoopSettings};
use trellis_lattice::api::{PutModelResponse, StatusResponse, StatusType, Subjects};
use trellis_runtime::{RuntimeConfig, Shortlist};
use trellis_sim::{SimConfig, SimLattice};

mod common;

const LATTICE: &str = "shortlist";
const HOSTS: usize = 40;

fn manifest(name: &str, kind: &str, image: &str, instances: usize) -> String {
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {name}
  annotations:
    version: v1
spec:
  components:
    - name: part
      type: {kind}
      properties:
        image: {image}
      traits:
        - type: spreadscaler
          properties:
            instances: {instances}
"#
    )
}

async fn deploy(client: &async_nats::Client, name: &str, text: String) {
    let subjects = Subjects::new(LATTICE);
    let put: PutModelResponse = common::request(client, subjects.put(), &text).await;
    assert_eq!(put.current_version, "v1", "{}", put.message);
    let _: serde_json::Value = common::request(client, subjects.deploy(name), "{}").await;
}

async fn deployed(client: &async_nats::Client, name: &str) {
    let subjects = Subjects::new(LATTICE);
    common::eventually(&format!("{name} deployed"), || async {
        let status: StatusResponse = common::request(client, subjects.status(name), "").await;
        status
            .status
            .filter(|s| s.info.status_type == StatusType::Deployed)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shortlisted_rankings_place_every_instance_and_spread_apps() {
    let nats = NatsServer::start_temporary().unwrap();
    let plugins = common::plugin_dir(&["spreadscaler", "placement"]);
    // 10 % of 40 hosts, at least 3: each ranking scores 4 hosts.
    let shortlist = Shortlist {
        percent: Some(10),
        floor: 3,
    };
    let _controller = Controller::start(ControllerConfig {
        nats_url: nats.url(),
        lattices: vec![LATTICE.into()],
        plugin_dir: plugins.path().to_path_buf(),
        settings: LoopSettings {
            debounce: Duration::from_millis(5),
            ..LoopSettings::default()
        },
        runtime: RuntimeConfig {
            shortlist,
            ..RuntimeConfig::default()
        },
        ..ControllerConfig::default()
    })
    .await
    .unwrap();
    let sim = SimLattice::start(SimConfig {
        nats_url: nats.url(),
        lattice: LATTICE.into(),
        hosts: HOSTS,
        heartbeat_interval: Duration::from_millis(500),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    // Every host has said host_started and beaten its heart a few times.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 12 instances: three shortlists' worth, each on a host of its own.
    deploy(
        &client,
        "wide",
        manifest("wide", "component", "file:///w.wasm", 12),
    )
    .await;
    deployed(&client, "wide").await;
    let wide = sim.instances("wide-part");
    assert_eq!(wide.len(), 12, "a host per instance: {wide:?}");
    assert!(wide.values().all(|&n| n == 1), "{wide:?}");

    // A provider on 9 hosts (one per host at most): more than two shortlists hold.
    let provider = manifest("edge", "capability", "wasmcloud+builtin://http-server", 9);
    deploy(&client, "edge", provider).await;
    deployed(&client, "edge").await;
    let edge = sim.provider_hosts("edge-part");
    assert_eq!(edge.len(), 9, "{edge:?}");

    // Seven apps of one instance each, one after the other: successive rankings start where
    // the last stopped, so they land on seven different hosts.
    for i in 0..7 {
        let name = format!("one{i}");
        deploy(
            &client,
            &name,
            manifest(&name, "component", "file:///o.wasm", 1),
        )
        .await;
        deployed(&client, &name).await;
    }
    let hosts: std::collections::BTreeSet<String> = (0..7)
        .flat_map(|i| sim.instances(&format!("one{i}-part")).into_keys())
        .collect();
    assert_eq!(hosts.len(), 7, "{hosts:?}");
}
