//! Rollouts end to end, with real processes: three nodes, two controllers, and a load
//! generator running throughout. A canary from v1 to v2 completes with no failed request,
//! even with its owner controller killed mid-rollout (the other carries on from the stored
//! step: no step repeated or skipped); a v3 that answers 500 is rolled back by itself, with
//! its failed requests counted; a blue-green switch, and a blue-green rollback by a person,
//! each lose no request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use trellis_cli::client::ApiClient;
use trellis_cli::nats_server::free_port;
use trellis_lattice::api::{Rollout, RolloutAction, RolloutState};
use trellis_tests::process::{wait_until, ProcessLattice};
use trellis_tests::{
    built_example, built_fixture, echo_app_yaml, http_get, http_server_component, spread_trait,
};

const APP: &str = "shop";
/// What every client asks: the echo component answers it 200; the hostile one, standing in
/// for a broken build, answers it 500 (it reads a file it has no access to).
const PATH: &str = "/file?path=/missing";

/// `shop` at `version`: `image` as component `echo` (3 instances) behind the HTTP server on
/// `address`, rolled out by `policy` (lines of a `rollout` policy's properties) when given.
fn shop(
    version: &str,
    image: &std::path::Path,
    address: &str,
    policy: Option<(&str, &str)>,
) -> String {
    let mut text = echo_app_yaml(APP, version, "", image, &spread_trait(3, None))
        + &http_server_component(APP, address, &spread_trait(1, None));
    if let Some((strategy, properties)) = policy {
        text += &format!("  policies:\n    - name: rollout\n      type: {strategy}\n      properties:\n{properties}");
    }
    text
}

/// Clients asking [`PATH`] back to back; counts answers by kind.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    clients: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(address: &str, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let clients = (0..clients)
            .map(|_| {
                let (stop, ok, failed, address) = (
                    stop.clone(),
                    ok.clone(),
                    failed.clone(),
                    address.to_string(),
                );
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match http_get(&address, PATH, Duration::from_secs(10)) {
                            Ok((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                            _ => failed.fetch_add(1, Ordering::Relaxed),
                        };
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failed,
            clients,
        }
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients {
            c.join().unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

async fn rollout(api: &ApiClient) -> Option<Rollout> {
    api.rollout(RolloutAction::Get, APP, None)
        .await
        .ok()?
        .rollout
}

/// Waits until the app's rollout to `to` is in `state`; returns it.
async fn wait_for(api: &ApiClient, to: &str, state: RolloutState, within: Duration) -> Rollout {
    wait_until(&format!("the rollout to {to} {state}"), within, || async {
        match rollout(api).await {
            Some(r) if r.to == to && r.state == state => Ok(r),
            Some(r) => Err(format!(
                "{} → {}: {} at step {}: {}",
                r.from, r.to, r.state, r.step, r.message
            )),
            None => Err("no rollout".into()),
        }
    })
    .await
}

async fn instances_of(lattice: &ProcessLattice, api: &ApiClient, id: &str) -> u32 {
    lattice.instances(api, id).await.values().sum()
}

/// Waits until component `gone` runs nowhere and `kept` runs `count` instances.
async fn wait_replaced(
    lattice: &ProcessLattice,
    api: &ApiClient,
    gone: &str,
    kept: &str,
    count: u32,
) {
    wait_until(
        &format!("{gone} removed, {kept} at {count}"),
        Duration::from_secs(20),
        || async {
            match (
                instances_of(lattice, api, gone).await,
                instances_of(lattice, api, kept).await,
            ) {
                (0, n) if n == count => Ok(()),
                other => Err(format!("{gone}, {kept} instances: {other:?}")),
            }
        },
    )
    .await;
}

/// Deploys `file` (put and deploy) and returns the CLI's output once it returned.
async fn deploy(lattice: &ProcessLattice, file: &std::path::Path, no_wait: bool) -> String {
    let mut args = vec!["app", "deploy", file.to_str().unwrap(), "--timeout", "60"];
    if no_wait {
        args.push("--no-wait");
    }
    let out = lattice.cli(&args).await.unwrap();
    assert_eq!(out.code, 0, "{}", out.text());
    out.text()
}

async fn three_nodes(scenario: &str, controllers: usize) -> (ProcessLattice, ApiClient, String) {
    let mut lattice = ProcessLattice::start(
        scenario,
        &[
            "spreadscaler",
            "linkscaler",
            "placement",
            "canary",
            "bluegreen",
        ],
    )
    .unwrap();
    for _ in 0..controllers {
        lattice.add_controller().await.unwrap();
    }
    for _ in 0..3 {
        lattice.add_node(&[]).await.unwrap();
    }
    let api = lattice.api().await.unwrap();
    let address = format!("127.0.0.1:{}", free_port().unwrap());
    (lattice, api, address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_completes_across_a_controller_failover_and_a_failing_one_rolls_back() {
    let (mut lattice, api, address) = three_nodes(
        "canary: v1 → v2 with the owner killed mid-rollout, then a failing v3",
        2,
    )
    .await;
    let echo = built_example("echo");
    let v1 = lattice.write("v1.yaml", &shop("v1", &echo, &address, None));
    deploy(&lattice, &v1, false).await;
    wait_until("v1 serving", Duration::from_secs(20), || async {
        http_get(&address, PATH, Duration::from_secs(2)).map_err(|e| e.to_string())
    })
    .await;

    let load = Load::start(&address, 4);
    let canary =
        "        steps: \"34,67,100\"\n        pause: 3s\n        max_error_rate: \"0.05\"\n";
    let v2 = lattice.write(
        "v2.yaml",
        &shop("v2", &echo, &address, Some(("canary", canary))),
    );
    let said = deploy(&lattice, &v2, true).await;
    assert!(
        said.contains("rolling shop out from v1 to v2 (canary)"),
        "{said}"
    );

    // The owner is killed once step 2 is stored; the other controller carries on.
    wait_until("step 2", Duration::from_secs(30), || async {
        match rollout(&api).await {
            Some(r) if r.step >= 2 => Ok(()),
            other => Err(format!("{:?}", other.map(|r| (r.step, r.message)))),
        }
    })
    .await;
    let owner = lattice.owner(APP).await.expect("the app has an owner");
    let victim = lattice
        .controller_that_took(&owner)
        .expect("the owner's log says it took the app");
    let killed_at_step = rollout(&api).await.unwrap().step;
    lattice.kill(victim);

    let done = wait_for(&api, "v2", RolloutState::Done, Duration::from_secs(60)).await;
    let (ok, failed) = load.counts();
    let steps: Vec<u32> = done.steps.iter().map(|s| s.step).collect();
    assert_eq!(
        steps,
        vec![1, 2, 3, 4],
        "each step once, in order: {:#?}",
        done.steps
    );
    let traffic: Vec<u8> = done.steps.iter().map(|s| s.target.traffic).collect();
    assert_eq!(traffic, vec![34, 67, 100, 100]);
    wait_replaced(&lattice, &api, "shop-echo", "shop-echo-v2", 3).await;
    let served_by_v2 = done.new.as_ref().map_or(0, |f| f.requests);
    assert!(
        served_by_v2 > 0,
        "the new version served requests: {done:#?}"
    );
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during the canary",
        ok + failed
    );
    println!(
        "canary v1 → v2: steps {steps:?}, owner killed at step {killed_at_step}, {ok} requests, {failed} failed, {:.1} s",
        (done.updated_at - done.started_at).num_milliseconds() as f64 / 1000.0
    );

    // v3 fails every request: the canary's analysis rolls it back by itself.
    let before = load.counts();
    let bad = lattice.write(
        "v3.yaml",
        &shop(
            "v3",
            &built_fixture("hostile"),
            &address,
            Some(("canary", canary)),
        ),
    );
    deploy(&lattice, &bad, true).await;
    let started = Instant::now();
    let back = wait_for(
        &api,
        "v3",
        RolloutState::RolledBack,
        Duration::from_secs(60),
    )
    .await;
    let to_rollback = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ok, failed) = load.stop();
    let (ok, failed) = (ok - before.0, failed - before.1);
    assert!(back.message.contains("max_error_rate"), "{}", back.message);
    assert_eq!(
        back.steps.last().map(|s| s.target.traffic),
        Some(0),
        "rolled back: no request to v3"
    );
    assert!(
        failed > 0,
        "v3's failures reached the clients while it had its share"
    );
    assert!(
        failed * 3 < ok + failed,
        "failed requests are bounded by the canary's share (34%) and the time to notice: {failed} of {}",
        ok + failed
    );
    wait_replaced(&lattice, &api, "shop-echo-v3", "shop-echo-v2", 3).await;
    let status = lattice
        .cli(&["app", "rollout", "status", APP])
        .await
        .unwrap();
    assert!(status.text().contains("rolled back"), "{}", status.text());
    println!(
        "failing canary v2 → v3: rolled back {:.1} s after the deploy; {failed} of {} requests failed meanwhile ({})",
        to_rollback.as_secs_f64(),
        ok + failed,
        back.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_switches_and_rolls_back_without_a_failed_request() {
    let (lattice, api, address) =
        three_nodes("blue-green: a switch, then a rollback by a person", 1).await;
    let echo = built_example("echo");
    let v1 = lattice.write("v1.yaml", &shop("v1", &echo, &address, None));
    deploy(&lattice, &v1, false).await;
    wait_until("v1 serving", Duration::from_secs(20), || async {
        http_get(&address, PATH, Duration::from_secs(2)).map_err(|e| e.to_string())
    })
    .await;
    let load = Load::start(&address, 4);

    // A switch: v2 starts beside v1, takes every request once ready, v1 goes after 3 s.
    let quick = "        keep_old_for: 3s\n";
    let v2 = lattice.write(
        "v2.yaml",
        &shop("v2", &echo, &address, Some(("blue-green", quick))),
    );
    let out = deploy(&lattice, &v2, false).await;
    assert!(
        out.contains("switched every request to v2"),
        "the deploy follows the rollout: {out}"
    );
    let done = wait_for(&api, "v2", RolloutState::Done, Duration::from_secs(10)).await;
    let targets: Vec<(u8, u8, u8)> = done
        .steps
        .iter()
        .map(|s| {
            (
                s.target.traffic,
                s.target.new_instances,
                s.target.old_instances,
            )
        })
        .collect();
    assert_eq!(
        targets[..2],
        [(0, 100, 100), (100, 100, 100)],
        "{targets:?}"
    );
    let switched = load.counts();
    assert_eq!(
        switched.1, 0,
        "failed requests during the switch: {switched:?}"
    );

    // A rollback by a person while the old version is kept ready.
    let slow = "        keep_old_for: 60s\n";
    let v3 = lattice.write(
        "v3.yaml",
        &shop("v3", &echo, &address, Some(("blue-green", slow))),
    );
    deploy(&lattice, &v3, true).await;
    wait_until("v3 switched", Duration::from_secs(30), || async {
        match rollout(&api).await {
            Some(r) if r.to == "v3" && r.step == 2 => Ok(()),
            other => Err(format!("{:?}", other.map(|r| (r.step, r.message)))),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let aborted = lattice
        .cli(&[
            "app",
            "rollout",
            "abort",
            APP,
            "--reason",
            "checkout is slow",
        ])
        .await
        .unwrap();
    assert_eq!(aborted.code, 0, "{}", aborted.text());
    let back = wait_for(
        &api,
        "v3",
        RolloutState::RolledBack,
        Duration::from_secs(20),
    )
    .await;
    assert!(
        back.message.contains("checkout is slow"),
        "{}",
        back.message
    );
    let again = lattice
        .cli(&["app", "rollout", "abort", APP])
        .await
        .unwrap();
    assert_eq!(again.code, 3, "nothing left to abort: {}", again.text());
    assert!(
        again.text().contains("no rollout under way"),
        "{}",
        again.text()
    );
    wait_replaced(&lattice, &api, "shop-echo-v3", "shop-echo-v2", 3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ok, failed) = load.stop();
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    println!(
        "blue-green: switch to v2 with {} requests, 0 failed; rollback of v3 by a person with {ok} requests in all, {failed} failed",
        switched.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_by_region_moves_one_region_after_another() {
    let mut lattice = ProcessLattice::start(
        "canary by host label: eu first, then us",
        &["spreadscaler", "linkscaler", "placement", "canary"],
    )
    .unwrap();
    lattice.add_controller().await.unwrap();
    let eu = lattice.add_node(&[("region", "eu")]).await.unwrap();
    let us = lattice.add_node(&[("region", "us")]).await.unwrap();
    let (eu, us) = (
        lattice.procs[eu].host_id.clone().unwrap(),
        lattice.procs[us].host_id.clone().unwrap(),
    );
    let api = lattice.api().await.unwrap();
    let address = format!("127.0.0.1:{}", free_port().unwrap());
    let echo = built_example("echo");
    let app = |version: &str, policy: Option<(&str, &str)>| {
        let mut text = echo_app_yaml(APP, version, "", &echo, &spread_trait(2, None))
            + &http_server_component(APP, &address, &spread_trait(1, None));
        if let Some((strategy, properties)) = policy {
            text += &format!("  policies:\n    - name: rollout\n      type: {strategy}\n      properties:\n{properties}");
        }
        text
    };
    let v1 = lattice.write("v1.yaml", &app("v1", None));
    deploy(&lattice, &v1, false).await;
    let load = Load::start(&address, 2);
    let by_region = "        by_label: region\n        order: \"eu,us\"\n        pause: 4s\n";
    let v2 = lattice.write("v2.yaml", &app("v2", Some(("canary", by_region))));
    deploy(&lattice, &v2, true).await;

    // Step 1: v2 on the eu host only, v1 on the us host only.
    let placed = wait_until("v2 in eu, v1 in us", Duration::from_secs(30), || async {
        let (old, new) = (
            lattice.instances(&api, "shop-echo").await,
            lattice.instances(&api, "shop-echo-v2").await,
        );
        let on =
            |m: &std::collections::BTreeMap<String, u32>, h: &str| m.get(h).copied().unwrap_or(0);
        if on(&new, &eu) == 1 && on(&new, &us) == 0 && on(&old, &us) == 1 && on(&old, &eu) == 0 {
            Ok((old, new))
        } else {
            Err(format!("v1 {old:?}, v2 {new:?}"))
        }
    })
    .await;
    let step = rollout(&api).await.unwrap();
    assert_eq!(step.step, 1);
    assert_eq!(
        step.target.hosts.as_ref().map(|h| h.new_values.clone()),
        Some(vec!["eu".to_string()])
    );

    let done = wait_for(&api, "v2", RolloutState::Done, Duration::from_secs(40)).await;
    wait_until(
        "v2 in both regions, v1 gone",
        Duration::from_secs(20),
        || async {
            let (old, new) = (
                instances_of(&lattice, &api, "shop-echo").await,
                lattice.instances(&api, "shop-echo-v2").await,
            );
            if old == 0 && new.values().sum::<u32>() == 2 {
                Ok(())
            } else {
                Err(format!("v1 {old}, v2 {new:?}"))
            }
        },
    )
    .await;
    let (ok, failed) = load.stop();
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    println!(
        "canary by region: step 1 placed {placed:?}; done after {} steps, {ok} requests, 0 failed",
        done.steps.len()
    );
}
