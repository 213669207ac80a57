//! High availability with real processes: three `trellis controller` processes serve a lattice
//! of three `trellis node` processes. The owner of an app is killed with SIGKILL (no lease
//! released) just as it starts scaling; another controller takes the app over within seconds,
//! finishes the job, and no control command on the lattice is sent twice.

use std::time::{Duration, Instant};

use trellis_lattice::api::StatusType;
use trellis_tests::process::{wait_until, ProcessLattice};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_owner_process_mid_scale_hands_the_app_over_without_duplicates() {
    let mut lattice = ProcessLattice::start(
        "three controllers, the owner killed with SIGKILL mid-scale",
        &["spreadscaler"],
    )
    .unwrap();
    for _ in 0..3 {
        lattice.add_node(&[]).await.unwrap();
    }
    for _ in 0..3 {
        lattice.add_controller().await.unwrap();
    }
    let api = lattice.api().await.unwrap();
    let counter = lattice.count_commands().await.unwrap();

    let v1 = lattice.write_echo_app("v1", 3);
    let deploy = lattice
        .cli(&["app", "deploy", v1.to_str().unwrap(), "--timeout", "30"])
        .await
        .unwrap();
    assert_eq!(deploy.code, 0, "{}", deploy.text());
    let first_owner = lattice.owner("web").await.expect("web has an owner");
    // The owner said so in its log when it took the app.
    let victim = lattice
        .controller_that_took(&first_owner)
        .expect("one controller's log says it took web");
    counter.clear();

    // Scale up, and kill the owner as soon as its first scale command is out.
    let v2 = lattice.write_echo_app("v2", 9);
    let deploy = lattice
        .cli(&["app", "deploy", v2.to_str().unwrap(), "--no-wait"])
        .await
        .unwrap();
    assert_eq!(deploy.code, 0, "{}", deploy.text());
    wait_until("the owner starts scaling", Duration::from_secs(10), || {
        let counter = &counter;
        async move {
            if counter.matching(".component.scale.").is_empty() {
                Err("no scale command yet".to_string())
            } else {
                Ok(())
            }
        }
    })
    .await;
    lattice.kill(victim);
    let killed = Instant::now();

    let new_owner = wait_until(
        "another controller takes web",
        Duration::from_secs(10),
        || {
            let (lattice, first_owner) = (&lattice, &first_owner);
            async move {
                match lattice.owner("web").await {
                    Some(o) if &o != first_owner => Ok(o),
                    other => Err(format!("owner {other:?}")),
                }
            }
        },
    )
    .await;
    let takeover = killed.elapsed();

    wait_until("9 instances over 3 nodes", Duration::from_secs(30), || {
        let (lattice, api) = (&lattice, &api);
        async move {
            let running = lattice.instances(api, "web-echo").await;
            if running.values().sum::<u32>() == 9 && running.len() == 3 {
                Ok(())
            } else {
                Err(format!("{running:?}"))
            }
        }
    })
    .await;
    let status = api
        .wait_deployed("web", Duration::from_secs(15), |_| {})
        .await
        .unwrap();
    assert_eq!(status.info.status_type, StatusType::Deployed);

    // Let late or repeated commands show, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let duplicates = counter.duplicates();
    assert!(duplicates.is_empty(), "sent twice: {duplicates:#?}");
    let scales = counter.matching(".component.scale.");
    assert_eq!(scales.len(), 3, "one scale command per node: {scales:?}");
    println!("owner process killed mid-scale; {new_owner} took over after {takeover:?}");
}
