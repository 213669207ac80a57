//! Host health with hysteresis, end to end with real processes: a node frozen for a few
//! seconds (SIGSTOP, as a hung machine) becomes suspect, not dead; nothing it runs moves; new
//! work goes to the other nodes while it is suspect; once thawed it is healthy again only
//! after a run of heartbeats on time. Every change is published as an event and shown by
//! `trellis get hosts`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use trellis_lattice::api::HostHealth;
use trellis_tests::process::{wait_until, CommandCounter, ProcessLattice};

/// `instances` echo instances, one per host at most (the spread scaler spreads evenly).
fn app(name: &str, instances: u32) -> String {
    trellis_tests::echo_only(name, "v1", &trellis_tests::built_example("echo"), instances)
}

/// The commands sent (not queries) whose body names `component_id`.
fn about(commands: &CommandCounter, component_id: &str) -> Vec<String> {
    commands
        .matching(".component.")
        .into_iter()
        .filter(|(_, body)| String::from_utf8_lossy(body).contains(component_id))
        .map(|(subject, _)| subject)
        .collect()
}

async fn health_of(lattice: &ProcessLattice) -> BTreeMap<String, (HostHealth, u64)> {
    let api = lattice.api().await.unwrap();
    match api.host_reports(false).await {
        Ok(r) => r
            .hosts
            .into_iter()
            .map(|h| (h.host_id, (h.health, h.instances)))
            .collect(),
        Err(_) => BTreeMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_becomes_suspect_keeps_its_work_and_gets_no_new_work() {
    let mut lattice =
        ProcessLattice::start("a paused node becomes suspect", &["spreadscaler"]).unwrap();
    // Suspect after one missed heartbeat, forgotten only after 30 s: the pause below lies
    // between the two.
    lattice
        .start_controller(&[
            "--suspect-after",
            "1",
            "--healthy-after",
            "3",
            "--host-timeout",
            "30",
        ])
        .await
        .unwrap();
    let frozen = lattice.add_node(&[]).await.unwrap();
    lattice.add_node(&[]).await.unwrap();
    lattice.add_node(&[]).await.unwrap();
    let frozen_id = lattice.procs[frozen].host_id.clone().unwrap();
    let others: Vec<String> = lattice
        .host_ids()
        .into_iter()
        .filter(|id| *id != frozen_id)
        .collect();
    let api = lattice.api().await.unwrap();

    // One instance on each node, the frozen one included.
    let steady = lattice.write("steady.yaml", &app("steady", 3));
    let out = lattice
        .cli(&["app", "deploy", steady.to_str().unwrap(), "--timeout", "60"])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{}", out.text());
    let before = lattice.instances(&api, "steady-echo").await;
    assert_eq!(before.get(&frozen_id), Some(&1), "{before:?}");

    let client = async_nats::connect(lattice.nats.url()).await.unwrap();
    let mut changes = client
        .subscribe(format!("wadm.evt.{}.host_health_changed", lattice.lattice))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let commands = lattice.count_commands().await.unwrap();

    lattice.pause(frozen);
    let paused_at = Instant::now();
    wait_until(
        "the frozen node is suspect",
        Duration::from_secs(10),
        || async {
            let health = health_of(&lattice).await;
            match health.get(&frozen_id) {
                Some((HostHealth::Suspect, _)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let became_suspect = paused_at.elapsed();

    // `trellis get hosts` lists it as suspect, though it cannot answer the ping.
    let out = lattice.cli(&["get", "hosts"]).await.unwrap();
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&frozen_id))
        .unwrap_or_else(|| panic!("the frozen host is not listed:\n{}", out.text()));
    assert!(line.contains("suspect"), "{line}");

    // New work goes to the two healthy nodes.
    let fresh = lattice.write("fresh.yaml", &app("fresh", 2));
    let out = lattice
        .cli(&["app", "deploy", fresh.to_str().unwrap(), "--timeout", "60"])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{}", out.text());
    // The frozen node cannot answer: the others are asked, and the controller counts what
    // the frozen one runs.
    for host in &others {
        let inventory = api.inventory(host).await.unwrap();
        let fresh = inventory.components.iter().find(|c| c.id == "fresh-echo");
        assert_eq!(
            fresh.map(|c| c.max_instances),
            Some(1),
            "{host}: {inventory:?}"
        );
    }

    // Nothing the frozen node runs was moved or doubled meanwhile: the controller still
    // counts its instance, and sent no command about `steady`.
    let health = health_of(&lattice).await;
    assert_eq!(health[&frozen_id], (HostHealth::Suspect, 1), "{health:?}");
    let sent = about(&commands, "steady-echo");
    assert!(
        sent.is_empty(),
        "commands about steady while suspect: {sent:?}"
    );

    lattice.resume(frozen);
    let resumed_at = Instant::now();
    wait_until(
        "the thawed node is healthy again",
        Duration::from_secs(15),
        || async {
            let health = health_of(&lattice).await;
            match health.get(&frozen_id) {
                Some((HostHealth::Healthy, _)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let recovered = resumed_at.elapsed();
    // Three heartbeats in a row, a second apart, are needed: not the first one.
    assert!(
        recovered >= Duration::from_millis(1500),
        "healthy after {recovered:?}"
    );
    assert_eq!(lattice.instances(&api, "steady-echo").await, before);
    assert!(about(&commands, "steady-echo").is_empty());

    // Both changes were published, in order.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let msg = tokio::time::timeout(Duration::from_secs(5), changes.next())
            .await
            .expect("a health event")
            .unwrap();
        let event: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!(event["type"], "com.trellis.host_health_changed");
        if event["data"]["host_id"] == frozen_id.as_str() {
            seen.push((event["data"]["from"].clone(), event["data"]["to"].clone()));
        }
    }
    assert_eq!(
        seen,
        [
            (serde_json::json!("healthy"), serde_json::json!("suspect")),
            (serde_json::json!("suspect"), serde_json::json!("healthy")),
        ]
    );
    println!(
        "paused → suspect: {:.1}s; resumed → healthy: {:.1}s",
        became_suspect.as_secs_f64(),
        recovered.as_secs_f64()
    );
}
