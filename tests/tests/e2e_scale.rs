//! Scaling across three real node processes: 1 → 5 → 2 instances. Every node ends with the
//! count the controller asked of it, the instances are spread, and the control-interface
//! commands on the lattice are exactly the ones needed: one scale command per node whose count
//! changes, none repeated, none after the app settles.

use std::collections::BTreeMap;
use std::time::Duration;

use trellis_tests::process::{wait_until, CommandCounter, ProcessLattice};

const COMPONENT: &str = "web-echo";

/// The scale commands for our component: (host, count) in the order sent.
fn scale_commands(counter: &CommandCounter) -> Vec<(String, u32)> {
    counter
        .matching(".component.scale.")
        .into_iter()
        .filter_map(|(subject, payload)| {
            let body: serde_json::Value = serde_json::from_slice(&payload).ok()?;
            if body["component_id"] != COMPONENT {
                return None;
            }
            let host = subject.rsplit('.').next()?.to_string();
            Some((host, body["count"].as_u64()? as u32))
        })
        .collect()
}

/// Deploys `instances` and checks the lattice reaches it with the fewest commands. Returns the
/// instances per node afterwards.
async fn scale_to(
    lattice: &ProcessLattice,
    counter: &CommandCounter,
    version: &str,
    instances: u32,
    before: &BTreeMap<String, u32>,
    settle: Duration,
) -> BTreeMap<String, u32> {
    let api = lattice.api().await.unwrap();
    counter.clear();
    let file = lattice.write_echo_app(version, instances);
    let deploy = lattice
        .cli(&["app", "deploy", file.to_str().unwrap(), "--timeout", "30"])
        .await
        .unwrap();
    assert_eq!(deploy.code, 0, "deploy {version}: {}", deploy.text());
    let after = wait_until(
        &format!("{instances} instances of {COMPONENT}"),
        Duration::from_secs(15),
        || {
            let (lattice, api) = (&*lattice, &api);
            async move {
                let running = lattice.instances(api, COMPONENT).await;
                if running.values().sum::<u32>() == instances {
                    Ok(running)
                } else {
                    Err(format!("{running:?}"))
                }
            }
        },
    )
    .await;
    // Anything sent after the target is reached is jitter; give it time to show.
    tokio::time::sleep(settle).await;
    let commands = scale_commands(counter);

    // Every node runs what the last command sent to it says, and nothing else changed.
    let hosts = lattice.live_host_ids();
    let count_on = |m: &BTreeMap<String, u32>, h: &String| m.get(h).copied().unwrap_or(0);
    let changed: Vec<&String> = hosts
        .iter()
        .filter(|h| count_on(before, h) != count_on(&after, h))
        .collect();
    for host in &hosts {
        let last = commands.iter().rev().find(|(h, _)| h == host);
        match last {
            Some((_, count)) => assert_eq!(
                *count,
                count_on(&after, host),
                "{host} was asked for {count} but runs {after:?}; commands {commands:?}"
            ),
            None => assert!(!changed.contains(&host), "{host} changed without a command"),
        }
    }
    assert_eq!(
        commands.len(),
        changed.len(),
        "{version}: one scale command per node whose count changes ({before:?} → {after:?}); sent {commands:?}"
    );
    let duplicates = counter.duplicates();
    assert!(duplicates.is_empty(), "sent twice: {duplicates:#?}");
    let status = api.status("web").await.unwrap().status.unwrap();
    assert_eq!(
        status.info.status_type,
        trellis_lattice::api::StatusType::Deployed,
        "{status:?}"
    );
    after
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_1_5_2_over_three_nodes_with_the_fewest_commands() {
    let mut lattice =
        ProcessLattice::start("scale 1 → 5 → 2 over three nodes", &["spreadscaler"]).unwrap();
    for zone in ["a", "b", "c"] {
        lattice.add_node(&[("zone", zone)]).await.unwrap();
    }
    lattice.add_controller().await.unwrap();
    let counter = lattice.count_commands().await.unwrap();
    let settle = Duration::from_millis(1500);

    let one = scale_to(&lattice, &counter, "v1", 1, &BTreeMap::new(), settle).await;
    assert_eq!(one.len(), 1, "{one:?}");

    let five = scale_to(&lattice, &counter, "v2", 5, &one, settle).await;
    assert_eq!(five.len(), 3, "spread over all three nodes: {five:?}");
    assert!(
        five.values().all(|n| (1..=2).contains(n)),
        "evenly spread: {five:?}"
    );

    // The last step waits past a full resync (5 s) so a pass that re-sends would show.
    let two = scale_to(&lattice, &counter, "v3", 2, &five, Duration::from_secs(6)).await;
    assert_eq!(two.len(), 2, "two nodes with one each: {two:?}");
    assert!(two.values().all(|n| *n == 1), "{two:?}");
}
