//! The autoscaler end to end, with real processes and a load generator: an app whose echo
//! component scales on requests in flight sleeps at zero instances, serves its first request
//! from zero (the node's HTTP server holds it while an instance starts), gains instances within
//! seconds of load starting, and goes back to zero after the down cooldown once load stops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use trellis_cli::nats_server::free_port;
use trellis_tests::process::{wait_until, ProcessLattice};
use trellis_tests::{built_example, echo_app_yaml, http_get, http_server_component, spread_trait};

const DOWN_COOLDOWN_SECS: u64 = 4;

/// Echo under the autoscaler (0 to 3 instances, one request in flight each), behind the HTTP
/// server on `address`.
fn app(address: &str) -> String {
    let autoscaler = format!(
        "        - type: autoscaler\n          properties:\n            min_instances: 0\n            \
         max_instances: 3\n            target_in_flight: 1\n            \
         scale_up_cooldown_seconds: 1\n            \
         scale_down_cooldown_seconds: {DOWN_COOLDOWN_SECS}\n"
    );
    echo_app_yaml("auto", "v1", "", &built_example("echo"), &autoscaler)
        + &http_server_component("auto", address, &spread_trait(1, None))
}

/// Echo instances on every node, as the nodes say.
async fn instances(lattice: &ProcessLattice, api: &trellis_cli::client::ApiClient) -> u32 {
    lattice.instances(api, "auto-echo").await.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_autoscaler_follows_load_and_sleeps_at_zero() {
    let mut lattice = ProcessLattice::start(
        "autoscaler: scale from zero, up on load, down to zero",
        &["autoscaler", "spreadscaler", "linkscaler", "placement"],
    )
    .unwrap();
    lattice.add_controller().await.unwrap();
    lattice.add_node(&[]).await.unwrap();
    lattice.add_node(&[]).await.unwrap();
    let api = lattice.api().await.unwrap();
    let address = format!("127.0.0.1:{}", free_port().unwrap());
    let file = lattice.write("auto.yaml", &app(&address));
    let out = lattice
        .cli(&["app", "deploy", file.to_str().unwrap(), "--timeout", "60"])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{}", out.text());
    // Deployed asleep: the server listens, no echo instance runs.
    wait_until(
        "the HTTP server listening",
        Duration::from_secs(20),
        || async {
            std::net::TcpStream::connect(&address)
                .map(drop)
                .map_err(|e| e.to_string())
        },
    )
    .await;
    assert_eq!(instances(&lattice, &api).await, 0);

    // The first request is held while an instance starts, then served.
    let started = Instant::now();
    let first = {
        let address = address.clone();
        tokio::task::spawn_blocking(move || http_get(&address, "/first", Duration::from_secs(30)))
            .await
            .unwrap()
            .unwrap()
    };
    let from_zero = started.elapsed();
    assert_eq!(first.0, 200, "{first:?}");
    assert!(first.1.contains("/first"), "{first:?}");
    assert!(instances(&lattice, &api).await >= 1);

    // Load: four clients, each with one request in flight at all times.
    let stop = Arc::new(AtomicBool::new(false));
    let load_started = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (stop, address) = (stop.clone(), address.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let _ = http_get(&address, &format!("/c{c}/{i}"), Duration::from_secs(10));
                }
            })
        })
        .collect();
    let grown = wait_until(
        "more instances under load",
        Duration::from_secs(30),
        || async {
            match instances(&lattice, &api).await {
                n if n >= 2 => Ok(n),
                n => Err(format!("{n} instances")),
            }
        },
    )
    .await;
    let to_grow = load_started.elapsed();
    // Up to the maximum, not past it.
    let most = wait_until(
        "the maximum under load",
        Duration::from_secs(30),
        || async {
            match instances(&lattice, &api).await {
                3 => Ok(3),
                n => Err(format!("{n} instances")),
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(instances(&lattice, &api).await, most, "past the maximum");

    // Load stops: after the down cooldown, back to zero.
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let stopped = Instant::now();
    wait_until("back to zero", Duration::from_secs(30), || async {
        match instances(&lattice, &api).await {
            0 => Ok(()),
            n => Err(format!("{n} instances")),
        }
    })
    .await;
    let to_sleep = stopped.elapsed();
    assert!(
        to_sleep >= Duration::from_secs(DOWN_COOLDOWN_SECS - 1),
        "scaled down before the cooldown: {to_sleep:?}"
    );
    println!(
        "first request from zero: {:.0} ms; load start → {grown} instances serving: {:.1} s; → {most} (max): done; load stop → 0 instances: {:.1} s (down cooldown {DOWN_COOLDOWN_SECS} s)",
        from_zero.as_secs_f64() * 1000.0,
        to_grow.as_secs_f64(),
        to_sleep.as_secs_f64()
    );
}
