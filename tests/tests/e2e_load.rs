//! Load-aware placement, end to end with real processes and a load generator: in a lattice of
//! three nodes where one is kept busy serving HTTP, new instances of an app that opts in to the
//! `load-aware` policy go to the other two, though the default ranking (fewest instances)
//! prefers the busy one. The nodes share one machine, so what tells the busy one apart is its
//! own process's CPU use, which nodes report in their heartbeats.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use trellis_cli::nats_server::free_port;
use trellis_tests::process::{wait_until, ProcessLattice};
use trellis_tests::{built_example, echo_app_yaml, http_get, http_server_component, spread_trait};

/// The echo component behind the HTTP server on `address`, both on hosts labelled `zone=x`.
fn busy_app(address: &str) -> String {
    let on_x = spread_trait(1, Some("x"));
    echo_app_yaml("busy", "v1", "", &built_example("echo"), &on_x)
        + &http_server_component("busy", address, &on_x)
}

/// `instances` echo instances under app `name`, with `annotations` (YAML lines) and, when
/// given, a spread over hosts with `zone: {zone}`.
fn echo_app(name: &str, instances: u32, annotations: &str, zone: Option<&str>) -> String {
    let traits = spread_trait(instances, zone);
    echo_app_yaml(name, "v1", annotations, &built_example("echo"), &traits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_instances_avoid_a_busy_node_under_the_load_aware_policy() {
    let mut lattice = ProcessLattice::start(
        "load-aware placement avoids a busy node",
        &["spreadscaler", "linkscaler", "placement", "loadaware"],
    )
    .unwrap();
    lattice.add_controller().await.unwrap();
    let x = lattice.add_node(&[("zone", "x")]).await.unwrap();
    let y = lattice.add_node(&[("zone", "yz")]).await.unwrap();
    let z = lattice.add_node(&[("zone", "yz")]).await.unwrap();
    let [x, y, z] = [x, y, z].map(|i| lattice.procs[i].host_id.clone().unwrap());
    let api = lattice.api().await.unwrap();
    let deploy = |name: &str, text: String| {
        let file = lattice.write(&format!("{name}.yaml"), &text);
        let lattice = &lattice;
        async move {
            let out = lattice
                .cli(&["app", "deploy", file.to_str().unwrap(), "--timeout", "60"])
                .await
                .unwrap();
            assert_eq!(out.code, 0, "deploy {}: {}", file.display(), out.text());
        }
    };

    // x serves HTTP (one echo instance and the server); y and z run 4 instances each of
    // filler: x runs the fewest.
    let address = format!("127.0.0.1:{}", free_port().unwrap());
    deploy("busy", busy_app(&address)).await;
    deploy("filler", echo_app("filler", 8, "", Some("yz"))).await;

    // Keep x busy: HTTP requests from three threads, as fast as it answers.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let load_started = Instant::now();
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let (stop, served, address) = (stop.clone(), served.clone(), address.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    if let Ok((200, _)) =
                        http_get(&address, &format!("/w{w}/{i}"), Duration::from_secs(5))
                    {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    // The controller sees x's own process work hard, and y's and z's not.
    let own = wait_until("x reported busy", Duration::from_secs(30), || async {
        let reports = api.host_reports(false).await.map_err(|e| e.to_string())?;
        let own = |id: &str| {
            reports
                .hosts
                .iter()
                .find(|h| h.host_id == id)
                .and_then(|h| h.resources.as_ref())
                .map_or(0.0, |r| r.process_cpu_use)
        };
        let (bx, by, bz) = (own(&x), own(&y), own(&z));
        if bx >= 0.1 && bx >= 3.0 * by.max(bz) {
            Ok((bx, by, bz))
        } else {
            Err(format!("own CPU x {bx:.2}, y {by:.2}, z {bz:.2}"))
        }
    })
    .await;

    // An app without the policy goes where fewest instances run, busy or not: x.
    deploy("control", echo_app("control", 1, "", None)).await;
    let control = lattice.instances(&api, "control-echo").await;
    assert_eq!(
        control.keys().collect::<Vec<_>>(),
        [&x],
        "default placement: {control:?}"
    );

    // An app that opts in gets y and z, though x still runs the fewest instances (3 against 4).
    deploy(
        "placed",
        echo_app("placed", 2, "    trellis.dev/placement: load-aware\n", None),
    )
    .await;
    let placed = lattice.instances(&api, "placed-echo").await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let hosts: Vec<&String> = placed.keys().collect();
    let mut expected = vec![&y, &z];
    expected.sort();
    assert_eq!(hosts, expected, "placed: {placed:?}; x is {x}");
    let rate = served.load(Ordering::Relaxed) as f64 / load_started.elapsed().as_secs_f64();
    println!(
        "busy node's own CPU {:.0}% (others {:.0}%, {:.0}%) at {rate:.0} requests/s; both new instances on the idle nodes",
        own.0 * 100.0,
        own.1 * 100.0,
        own.2 * 100.0
    );
}
