//! The churn guard against a host that misreports images (`trellis-sim` with
//! `misreport_provider_images`): the scaler would stop and start the provider forever; the
//! controller stops after a few round trips, says why in the app's status, and sends nothing
//! more for that provider.

use std::sync::atomic::Ordering;
use std::time::Duration;

use trellis_bus::nats_server::NatsServer;
use trellis_controller::churn::CHURN_FLIPS;
use trellis_controller::{Controller, ControllerConfig, LoopSettings};
use trellis_lattice::api::{PutModelResponse, StatusResponse, StatusType, Subjects};
use trellis_sim::{SimConfig, SimLattice};

mod common;

const LATTICE: &str = "churn";

const APP: &str = r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: quirky
  annotations:
    version: v1
spec:
  components:
    - name: http
      type: capability
      properties:
        image: wasmcloud+builtin://http-server
      traits:
        - type: spreadscaler
          properties:
            instances: 1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_misreports_images_is_not_churned() {
    let nats = NatsServer::start_temporary().unwrap();
    let plugins = common::plugin_dir(&["spreadscaler"]);
    let _controller = Controller::start(ControllerConfig {
        nats_url: nats.url(),
        lattices: vec![LATTICE.into()],
        plugin_dir: plugins.path().to_path_buf(),
        settings: LoopSettings {
            resync_interval: Duration::from_millis(200),
            debounce: Duration::from_millis(5),
            ..LoopSettings::default()
        },
        ..ControllerConfig::default()
    })
    .await
    .unwrap();
    let sim = SimLattice::start(SimConfig {
        nats_url: nats.url(),
        lattice: LATTICE.into(),
        hosts: 1,
        heartbeat_interval: Duration::from_millis(500),
        misreport_provider_images: true,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let subjects = Subjects::new(LATTICE);
    let put: PutModelResponse = common::request(&client, subjects.put(), APP).await;
    assert_eq!(put.current_version, "v1", "{}", put.message);
    let _: serde_json::Value = common::request(&client, subjects.deploy("quirky"), "{}").await;

    let status = common::eventually("the scaler failed for churn", || async {
        let status: StatusResponse = common::request(&client, subjects.status("quirky"), "").await;
        status.status.filter(|s| {
            s.info.status_type == StatusType::Failed && s.info.message.contains("churn")
        })
    })
    .await;
    assert!(
        status
            .info
            .message
            .contains("wasmcloud+builtin://http-server"),
        "the status names what churned: {}",
        status.info.message
    );
    // A few round trips, then nothing more: the guard holds for minutes.
    let starts = sim.counters().provider_starts.load(Ordering::Relaxed);
    assert!(
        starts <= CHURN_FLIPS as u64,
        "{starts} starts before the guard stepped in"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sim.counters().provider_starts.load(Ordering::Relaxed),
        starts,
        "sent more after the guard"
    );
}
