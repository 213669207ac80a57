//! The controller against simulated lattices (`trellis-sim`): a dead host's instances move
//! elsewhere within seconds; undeploy (destructive and not), delete, rollback and plan; one
//! controller serving two lattices.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::de::DeserializeOwned;
use trellis_cli::nats_server::NatsServer;
use trellis_controller::{Controller, ControllerConfig, LoopSettings};
use trellis_lattice::api::{
    DeleteModelResponse, DeployModelResponse, DeployResult, GetResult, PlanResponse,
    PutModelResponse, PutResult, Status, StatusResponse, StatusType, Subjects, VersionResponse,
};
use trellis_sim::{SimConfig, SimLattice};
use trellis_tests::{built_plugin, fast_settings};

struct Setup {
    _dir: tempfile::TempDir,
    nats: NatsServer,
    controller: Controller,
    client: async_nats::Client,
}

async fn setup(lattices: &[&str], settings: LoopSettings) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(0, &dir.path().join("nats")).unwrap();
    let plugin_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugin_dir).unwrap();
    std::fs::copy(
        built_plugin("spreadscaler"),
        plugin_dir.join("spreadscaler.wasm"),
    )
    .unwrap();
    let controller = Controller::start(ControllerConfig {
        nats_url: nats.url(),
        lattices: lattices.iter().map(|l| l.to_string()).collect(),
        plugin_dir,
        settings,
        ..ControllerConfig::default()
    })
    .await
    .unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    Setup {
        _dir: dir,
        nats,
        controller,
        client,
    }
}

async fn sim(setup: &Setup, lattice: &str, hosts: usize) -> SimLattice {
    SimLattice::start(SimConfig {
        nats_url: setup.nats.url(),
        lattice: lattice.into(),
        hosts,
        heartbeat_interval: Duration::from_millis(500),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// An app of one component, spread over every host.
fn manifest(name: &str, version: &str, instances: usize) -> String {
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {name}
  annotations:
    version: {version}
spec:
  components:
    - name: worker
      type: component
      properties:
        image: file:///simulated/worker.wasm
      traits:
        - type: spreadscaler
          properties:
            instances: {instances}
"#
    )
}

async fn request<T: DeserializeOwned>(
    client: &async_nats::Client,
    subject: String,
    body: &str,
) -> T {
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(subject.clone(), body.to_string().into()),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer on {subject}"))
    .unwrap();
    serde_json::from_slice(&reply.payload)
        .unwrap_or_else(|e| panic!("unreadable answer on {subject}: {e}"))
}

async fn put(client: &async_nats::Client, lattice: &str, text: &str) {
    let put: PutModelResponse = request(client, Subjects::new(lattice).put(), text).await;
    assert_ne!(put.result, PutResult::Error, "{}", put.message);
}

async fn deploy(client: &async_nats::Client, lattice: &str, name: &str, version: &str) {
    let body = format!(r#"{{"version":"{version}"}}"#);
    let resp: DeployModelResponse =
        request(client, Subjects::new(lattice).deploy(name), &body).await;
    assert_eq!(resp.result, DeployResult::Acknowledged, "{}", resp.message);
}

async fn status(client: &async_nats::Client, lattice: &str, name: &str) -> Status {
    let resp: StatusResponse = request(client, Subjects::new(lattice).status(name), "").await;
    resp.status.expect("a status")
}

/// Waits until the app is deployed and `check` holds.
async fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_deployed(client: &async_nats::Client, lattice: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = status(client, lattice, name).await;
        if status.info.status_type == StatusType::Deployed {
            return;
        }
        assert!(Instant::now() < deadline, "{name} not deployed: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn total(instances: &BTreeMap<String, u32>) -> u32 {
    instances.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_hosts_instances_are_replaced_within_seconds() {
    let settings = LoopSettings {
        host_timeout: Duration::from_secs(2),
        ..fast_settings()
    };
    let setup = setup(&["sim"], settings).await;
    let lattice = sim(&setup, "sim", 6).await;
    put(&setup.client, "sim", &manifest("spread", "v1", 4)).await;
    deploy(&setup.client, "sim", "spread", "v1").await;
    wait_deployed(&setup.client, "sim", "spread").await;
    let running = lattice.instances("spread-worker");
    assert_eq!(total(&running), 4, "{running:?}");
    assert!(running.len() >= 2, "spread over several hosts: {running:?}");

    let victim = running.keys().next().unwrap().clone();
    let lost = running[&victim];
    let killed = Instant::now();
    assert!(lattice.kill(&victim));
    wait_until(
        "replacement of the dead host's instances",
        Duration::from_secs(10),
        || {
            let now = lattice.instances("spread-worker");
            !now.contains_key(&victim) && total(&now) == 4
        },
    )
    .await;
    let took = killed.elapsed();
    // Noticed after 2 s of silence, then one pass: well within 2 s + 3 s.
    assert!(took < Duration::from_secs(5), "replacement took {took:?}");
    eprintln!("{lost} instance(s) of a dead host replaced after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeploy_delete_rollback_and_plan() {
    let setup = setup(&["sim"], fast_settings()).await;
    let lattice = sim(&setup, "sim", 4).await;
    let client = &setup.client;
    let subjects = Subjects::new("sim");
    put(client, "sim", &manifest("app", "v1", 2)).await;
    put(client, "sim", &manifest("app", "v2", 3)).await;

    // Plan: the commands deploying v1 would issue, and none issued.
    let plan: PlanResponse = request(client, subjects.plan("app"), r#"{"version":"v1"}"#).await;
    assert_eq!(plan.result, GetResult::Success, "{}", plan.message);
    assert_eq!(plan.version, "v1");
    let planned: u64 = plan
        .commands
        .iter()
        .map(|c| {
            assert!(
                c.subject.starts_with("wasmbus.ctl.v1.sim.component.scale."),
                "{c:?}"
            );
            assert_eq!(c.body["annotations"]["wasmcloud.dev/appspec"], "app");
            c.body["count"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(planned, 2, "{plan:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        lattice
            .counters()
            .commands
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let unknown: PlanResponse = request(client, subjects.plan("nope"), "").await;
    assert_eq!(unknown.result, GetResult::NotFound);

    deploy(client, "sim", "app", "v1").await;
    wait_deployed(client, "sim", "app").await;
    deploy(client, "sim", "app", "v2").await;
    wait_until("v2's three instances", Duration::from_secs(10), || {
        total(&lattice.instances("app-worker")) == 3
    })
    .await;

    // Rollback: back to v1, the version deployed before.
    let rolled: DeployModelResponse = request(client, subjects.rollback("app"), "").await;
    assert_eq!(
        rolled.result,
        DeployResult::Acknowledged,
        "{}",
        rolled.message
    );
    assert_eq!(rolled.version.as_deref(), Some("v1"));
    wait_until(
        "v1's two instances after rollback",
        Duration::from_secs(10),
        || total(&lattice.instances("app-worker")) == 2,
    )
    .await;
    let never: DeployModelResponse = request(client, subjects.rollback("nope"), "").await;
    assert_eq!(never.result, DeployResult::NotFound);

    // Destructive undeploy: the status says so on wadm.status, and the instances go.
    let mut updates = client
        .subscribe(subjects.status_updates("app"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let undeploy: DeployModelResponse = request(client, subjects.undeploy("app"), "").await;
    assert_eq!(undeploy.result, DeployResult::Acknowledged);
    let published = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(msg) = updates.next().await {
            let status: Status = serde_json::from_slice(&msg.payload).unwrap();
            if status.info.status_type == StatusType::Undeployed {
                return;
            }
        }
    })
    .await;
    assert!(
        published.is_ok(),
        "no undeployed status on wadm.status.sim.app"
    );
    wait_until("removal after undeploy", Duration::from_secs(10), || {
        lattice.instances("app-worker").is_empty()
    })
    .await;

    // Non-destructive undeploy: managing stops, the instances stay.
    deploy(client, "sim", "app", "v1").await;
    wait_deployed(client, "sim", "app").await;
    wait_until("v1's instances", Duration::from_secs(10), || {
        total(&lattice.instances("app-worker")) == 2
    })
    .await;
    let undeploy: DeployModelResponse = request(
        client,
        subjects.undeploy("app"),
        r#"{"non_destructive":true}"#,
    )
    .await;
    assert_eq!(
        undeploy.result,
        DeployResult::Acknowledged,
        "{}",
        undeploy.message
    );
    assert_eq!(
        status(client, "sim", "app").await.info.status_type,
        StatusType::Undeployed
    );
    // Several periodic passes later, nothing was removed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(total(&lattice.instances("app-worker")), 2);

    // Delete one version, then all.
    let deleted: DeleteModelResponse =
        request(client, subjects.del("app"), r#"{"version":"v2"}"#).await;
    assert!(!deleted.undeploy);
    let versions: VersionResponse = request(client, subjects.versions("app"), "").await;
    let names: Vec<&str> = versions
        .versions
        .iter()
        .map(|v| v.version.as_str())
        .collect();
    assert_eq!(names, ["v1"]);
    let _: DeleteModelResponse = request(client, subjects.del("app"), "").await;
    let versions: VersionResponse = request(client, subjects.versions("app"), "").await;
    assert_eq!(versions.result, GetResult::NotFound);
    drop(setup.controller);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_controller_serves_two_lattices() {
    let setup = setup(&["east", "west"], fast_settings()).await;
    let east = sim(&setup, "east", 3).await;
    let west = sim(&setup, "west", 3).await;
    let client = &setup.client;
    put(client, "east", &manifest("shop", "v1", 2)).await;
    put(client, "west", &manifest("shop", "v1", 5)).await;
    deploy(client, "east", "shop", "v1").await;
    deploy(client, "west", "shop", "v1").await;
    wait_deployed(client, "east", "shop").await;
    wait_deployed(client, "west", "shop").await;
    // Same app name, two lattices: each runs its own manifest on its own hosts.
    assert_eq!(total(&east.instances("shop-worker")), 2);
    assert_eq!(total(&west.instances("shop-worker")), 5);
    // Each lattice's hosts got only their lattice's commands: as many scale commands as hosts
    // that run the component there.
    let scales = |sim: &SimLattice| {
        sim.counters()
            .component_scales
            .load(std::sync::atomic::Ordering::Relaxed) as usize
    };
    assert_eq!(scales(&east), east.instances("shop-worker").len());
    assert_eq!(scales(&west), west.instances("shop-worker").len());
    setup.controller.stop().await;
}
