//! Faults with real processes: a node killed with SIGKILL (its work moves to the others within
//! seconds of the heartbeat timeout), and nats-server killed and restarted on the same store
//! (everyone reconnects, nothing stored is lost, and the lattice still obeys), at once or after
//! an outage longer than the host timeout (no host is declared dead for it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use trellis_cli::client::ApiClient;
use trellis_cli::nats_server::free_port;
use trellis_lattice::api::StatusType;
use trellis_tests::process::{wait_until, ProcessLattice, HOST_TIMEOUT_SECS};
use trellis_tests::{built_example, echo_http_app, http_get};

fn write_app(lattice: &ProcessLattice, version: &str, instances: u32, address: &str) -> PathBuf {
    let image = built_example("echo");
    let text = echo_http_app("echo", version, &image, instances, address);
    lattice.write(&format!("echo-{version}.yaml"), &text)
}
async fn get(address: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let (address, path) = (address.to_string(), path.to_string());
    tokio::task::spawn_blocking(move || http_get(&address, &path, Duration::from_secs(5)))
        .await
        .unwrap()
}

/// `trellis app deploy FILE`, which must succeed.
async fn deploy(lattice: &ProcessLattice, file: &Path) {
    let deploy = lattice
        .cli(&["app", "deploy", file.to_str().unwrap(), "--timeout", "30"])
        .await
        .unwrap();
    assert_eq!(deploy.code, 0, "{}", deploy.text());
}

/// Two nodes and a controller, with echo v1 deployed twice behind an HTTP server; returns the
/// lattice and the server's address.
async fn two_nodes_serving_echo(scenario: &str) -> (ProcessLattice, String) {
    let mut lattice = ProcessLattice::start(scenario, &["spreadscaler", "linkscaler"]).unwrap();
    lattice.add_node(&[]).await.unwrap();
    lattice.add_node(&[]).await.unwrap();
    lattice.add_controller().await.unwrap();
    let address = format!("127.0.0.1:{}", free_port().unwrap());
    let v1 = write_app(&lattice, "v1", 2, &address);
    deploy(&lattice, &v1).await;
    (lattice, address)
}

/// Waits until `n` echo instances run in all; returns where (host → instances).
async fn echo_instances(
    lattice: &ProcessLattice,
    api: &ApiClient,
    n: u32,
) -> BTreeMap<String, u32> {
    wait_until(
        &format!("{n} echo instances"),
        Duration::from_secs(15),
        || async move {
            let running = lattice.instances(api, "echo-echo").await;
            if running.values().sum::<u32>() == n {
                Ok(running)
            } else {
                Err(format!("{running:?}"))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_work_moves_to_the_others() {
    let mut lattice = ProcessLattice::start(
        "kill -9 the node serving HTTP: its instances are rescheduled",
        &["spreadscaler", "linkscaler"],
    )
    .unwrap();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(lattice.add_node(&[]).await.unwrap());
    }
    lattice.add_controller().await.unwrap();
    let api = lattice.api().await.unwrap();
    let address = format!("127.0.0.1:{}", free_port().unwrap());
    let file = write_app(&lattice, "v1", 3, &address);
    deploy(&lattice, &file).await;
    assert_eq!(get(&address, "/before").await.unwrap().0, 200);

    // The victim: the node running the HTTP server provider (and an echo instance).
    let inventories = lattice.inventories(&api).await;
    let victim_host = inventories
        .iter()
        .find(|(_, inv)| inv.providers.iter().any(|p| p.id == "echo-httpserver"))
        .map(|(host, _)| host.clone())
        .expect("a node runs the HTTP server");
    let victim = nodes
        .iter()
        .copied()
        .find(|i| lattice.procs[*i].host_id.as_deref() == Some(victim_host.as_str()))
        .unwrap();
    lattice.kill(victim);
    let killed = Instant::now();

    // The host timeout, then the controller's next check (each second, and only once it has read
    // every pending event) and the pass that reschedules; with slack for a loaded machine.
    let bound = Duration::from_secs(HOST_TIMEOUT_SECS + 12);
    wait_until("the dead node's work rescheduled", bound, || {
        let (lattice, api) = (&lattice, &api);
        async move {
            let inventories = lattice.inventories(api).await;
            let echoes: u32 = inventories
                .values()
                .flat_map(|inv| &inv.components)
                .filter(|c| c.id == "echo-echo")
                .map(|c| c.max_instances)
                .sum();
            let servers = inventories
                .values()
                .filter(|inv| inv.providers.iter().any(|p| p.id == "echo-httpserver"))
                .count();
            if echoes == 3 && servers == 1 {
                Ok(())
            } else {
                Err(format!(
                    "{echoes} echo instances and {servers} HTTP servers on the live nodes"
                ))
            }
        }
    })
    .await;
    let moved = killed.elapsed();
    let (code, body) = get(&address, "/after").await.unwrap();
    assert_eq!(code, 200, "{body}");
    let status = api
        .wait_deployed("echo", Duration::from_secs(10), |_| {})
        .await
        .unwrap();
    assert_eq!(status.info.status_type, StatusType::Deployed);
    println!("a killed node's work ran elsewhere {moved:?} after the kill (host timeout {HOST_TIMEOUT_SECS} s)");
}

/// Nodes and controller reconnect, nothing stored is lost, HTTP still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_nats_loses_no_manifest_and_everyone_reconnects() {
    restart_nats("restart nats-server on the same store", false).await;
}

/// After the restart the controller still drives the nodes: a new version scales 2 → 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_nats_restart_the_controller_still_drives_the_nodes() {
    restart_nats("restart nats-server, then scale", true).await;
}

/// Waits until every node of the lattice answers the host inventory again.
async fn every_node_answers(lattice: &ProcessLattice, api: &ApiClient) {
    let hosts = lattice.host_ids();
    wait_until("every node answers again", Duration::from_secs(20), || {
        let hosts = &hosts;
        async move {
            let answering: Vec<String> = api
                .hosts()
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|h| h.id)
                .collect();
            if hosts.iter().all(|h| answering.contains(h)) {
                Ok(())
            } else {
                Err(format!("{answering:?} of {hosts:?}"))
            }
        }
    })
    .await;
}

/// nats-server away for twice the host timeout: every heartbeat sent meanwhile is lost, yet no
/// host is declared dead and nothing moves. The controller could not hear; the hosts were not
/// silent (it gives every host a fresh timeout once NATS is back, `after_outage`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_host_timeout_moves_nothing() {
    let (mut lattice, address) =
        two_nodes_serving_echo("nats-server away for twice the host timeout").await;
    let api = lattice.api().await.unwrap();
    let before = echo_instances(&lattice, &api, 2).await;

    let down = Duration::from_secs(2 * HOST_TIMEOUT_SECS);
    tokio::task::block_in_place(|| lattice.restart_nats_after(down)).unwrap();
    let api = lattice.api().await.unwrap();
    every_node_answers(&lattice, &api).await;
    // Long enough for a wrongly declared death to show: another host timeout, plus a pass.
    tokio::time::sleep(Duration::from_secs(HOST_TIMEOUT_SECS + 2)).await;

    let after = lattice.instances(&api, "echo-echo").await;
    assert_eq!(
        after, before,
        "where echo runs, before and after the outage"
    );
    let deaths: Vec<String> = lattice
        .logs_of("controller")
        .lines()
        .filter(|line| line.contains("missed its heartbeats"))
        .map(str::to_string)
        .collect();
    assert!(
        deaths.is_empty(),
        "hosts declared dead after an outage of {down:?}:\n{}",
        deaths.join("\n")
    );
    let (code, body) = get(&address, "/after-outage").await.unwrap();
    assert_eq!(code, 200, "{body}");
}

async fn restart_nats(scenario: &str, then_scale: bool) {
    let (mut lattice, address) = two_nodes_serving_echo(scenario).await;
    // A second app with two versions, stored but never deployed.
    let idle_v1 = lattice.dir().join("idle-v1.yaml");
    let idle_v2 = lattice.dir().join("idle-v2.yaml");
    for (path, version) in [(&idle_v1, "v1"), (&idle_v2, "v2")] {
        let text = std::fs::read_to_string(write_app(&lattice, version, 1, "127.0.0.1:1"))
            .unwrap()
            .replace("name: echo\n  annotations", "name: idle\n  annotations")
            // Configs are the app's own: a second app defining echo's would be refused.
            .replace("name: echo-http", "name: idle-http");
        std::fs::write(path, text).unwrap();
        let put = lattice
            .cli(&["app", "put", path.to_str().unwrap()])
            .await
            .unwrap();
        assert_eq!(put.code, 0, "{}", put.text());
    }
    let api = lattice.api().await.unwrap();
    let stored_before = api.list().await.unwrap();

    lattice.restart_nats().unwrap();
    let restarted = Instant::now();

    let api = lattice.api().await.unwrap();
    every_node_answers(&lattice, &api).await;
    let stored_after = wait_until("the controller answers", Duration::from_secs(20), || {
        let api = &api;
        async move { api.list().await.map_err(|e| e.to_string()) }
    })
    .await;
    // What is stored, not the live status (which may be mid-update).
    let stored = |list: &[trellis_lattice::api::ModelSummary]| {
        list.iter()
            .map(|m| {
                (
                    m.name.clone(),
                    m.version.clone(),
                    m.deployed_version.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        stored(&stored_after),
        stored(&stored_before),
        "the stored apps after the restart"
    );
    let versions = api.versions("idle").await.unwrap();
    assert_eq!(
        versions
            .versions
            .iter()
            .map(|v| v.version.as_str())
            .collect::<Vec<_>>(),
        ["v1", "v2"],
        "{versions:?}"
    );
    let reconnected = restarted.elapsed();

    let (code, body) = get(&address, "/after-restart").await.unwrap();
    assert_eq!(code, 200, "{body}");
    println!("nodes and controller back {reconnected:?} after nats-server restarted");
    if !then_scale {
        return;
    }

    // The controller still drives the nodes: scale 2 → 4, and HTTP still answers.
    let v2 = write_app(&lattice, "v2", 4, &address);
    deploy(&lattice, &v2).await;
    echo_instances(&lattice, &api, 4).await;
    let (code, body) = get(&address, "/after-scale").await.unwrap();
    assert_eq!(code, 200, "{body}");
}
