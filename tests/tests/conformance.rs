//! Conformance with the real wasmCloud programs, both ways: a wasmCloud 1.x host under a
//! trellis controller, wadm driving trellis nodes, wash against trellis, and the two
//! controllers side by side on one lattice of trellis nodes.
//!
//! Ignored by `cargo test`: the programs take ~40 minutes to build the first time.
//! `scripts/conformance.sh` builds them from crates.io (cached), says where they are, and runs
//! these with `--ignored`; `docs/conformance.md` has the last results.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use trellis_cli::client::ApiClient;
use trellis_cli::nats_server::free_port;
use trellis_tests::process::{wait_until, ProcessLattice};
use trellis_tests::real_programs::{add_wadm, add_wasmcloud_host, wash, wasmcloud_echo_app};
use trellis_tests::{built_example, echo_app, http_get};

/// The plugins a trellis controller needs for these apps.
const PLUGINS: &[&str] = &["spreadscaler", "linkscaler"];
/// How long a real host may take to compile and start the echo component (a debug build of
/// its wasmtime compiles slowly).
const START_PATIENCE: Duration = Duration::from_secs(60);

fn write_echo(
    lattice: &ProcessLattice,
    name: &str,
    version: &str,
    n: u32,
    address: &str,
) -> PathBuf {
    let text = wasmcloud_echo_app(name, version, &built_example("echo"), n, address);
    lattice.write(&format!("{name}-{version}.yaml"), &text)
}

async fn get(address: &str) -> anyhow::Result<(u16, String)> {
    let address = address.to_string();
    tokio::task::spawn_blocking(move || http_get(&address, "/conformance", Duration::from_secs(5)))
        .await
        .unwrap()
}

/// Waits until the app on `address` answers 200 (a listener may open a moment after the
/// status says deployed).
async fn answers(address: &str) {
    wait_until("curl answers 200", Duration::from_secs(10), || async {
        match get(address).await {
            Ok((200, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// `trellis app {args}`, which must succeed.
async fn trellis_app(lattice: &ProcessLattice, args: &[&str]) {
    let mut all = vec!["app"];
    all.extend_from_slice(args);
    let out = lattice.cli(&all).await.unwrap();
    assert_eq!(out.code, 0, "trellis {}: {}", all.join(" "), out.text());
}

/// Waits until `host` runs `n` instances of `component` (0: not at all).
async fn wait_instances(api: &ApiClient, host: &str, component: &str, n: u32) {
    wait_until(
        &format!("{n} instances of {component} on {host}"),
        START_PATIENCE,
        || async move {
            let inventory = api.inventory(host).await.map_err(|e| e.to_string())?;
            let running = inventory
                .components
                .iter()
                .find(|c| c.id == component)
                .map_or(0, |c| c.max_instances);
            if running == n {
                Ok(())
            } else {
                Err(format!("{running} running: {inventory:?}"))
            }
        },
    )
    .await
}

/// The commands sent so far (queries left out), each with how often.
fn commands(counter: &trellis_tests::process::CommandCounter) -> BTreeMap<String, usize> {
    counter
        .counts()
        .into_iter()
        .map(|((subject, payload), n)| {
            (
                format!("{subject} {}", String::from_utf8_lossy(&payload)),
                n,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real wasmCloud programs: scripts/conformance.sh"]
async fn a_trellis_controller_runs_echo_on_a_wasmcloud_host() {
    let mut lattice =
        ProcessLattice::start("trellis controller + wasmCloud host: echo", PLUGINS).unwrap();
    let (_, host) = add_wasmcloud_host(&mut lattice, &[]).await.unwrap();
    lattice.add_controller().await.unwrap();
    let api = lattice.api().await.unwrap();
    let counter = lattice.count_commands().await.unwrap();
    let address = format!("127.0.0.1:{}", free_port().unwrap());

    let started = Instant::now();
    let v1 = write_echo(&lattice, "echowc", "v1", 1, &address);
    trellis_app(
        &lattice,
        &["deploy", v1.to_str().unwrap(), "--timeout", "60"],
    )
    .await;
    let deployed = started.elapsed();
    let (code, body) = get(&address).await.unwrap();
    assert_eq!(code, 200, "{body}");
    println!("deploy → Deployed on a wasmCloud host: {deployed:?}; curl answered {code}");

    // The minimum: one config, one scale, one provider start, one link; nothing twice, and
    // nothing more while the app stays deployed (no churn over how the host names images).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sent = commands(&counter);
    for (command, n) in &sent {
        println!("{n}× {command}");
    }
    assert!(
        counter.duplicates().is_empty(),
        "{:?}",
        counter.duplicates()
    );
    let kinds: Vec<&str> = [
        "config.put",
        "component.scale",
        "provider.start",
        "link.put",
    ]
    .to_vec();
    for kind in &kinds {
        assert_eq!(
            counter.matching(&format!(".{kind}")).len(),
            1,
            "{kind}: {sent:#?}"
        );
    }
    assert_eq!(sent.len(), kinds.len(), "{sent:#?}");

    // The host shows the link the way it keeps it, and the controller took it as done.
    let links = api.links().await.unwrap();
    assert_eq!(links.len(), 1, "{links:?}");

    // Scale 1 → 4 → 1.
    for (version, n) in [("v2", 4), ("v3", 1)] {
        let file = write_echo(&lattice, "echowc", version, n, &address);
        trellis_app(
            &lattice,
            &["deploy", file.to_str().unwrap(), "--timeout", "60"],
        )
        .await;
        wait_instances(&api, &host, "echowc-echo", n).await;
        assert_eq!(get(&address).await.unwrap().0, 200);
    }

    // Undeploy leaves the host empty and the lattice without the app's link and config.
    counter.clear();
    trellis_app(&lattice, &["undeploy", "echowc"]).await;
    wait_until("an empty host", START_PATIENCE, || async {
        let inventory = api.inventory(&host).await.map_err(|e| e.to_string())?;
        let links = api.links().await.map_err(|e| e.to_string())?;
        if inventory.components.is_empty() && inventory.providers.is_empty() && links.is_empty() {
            Ok(())
        } else {
            Err(format!("{inventory:?} {links:?}"))
        }
    })
    .await;
    assert_eq!(counter.matching(".link.del").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real wasmCloud programs: scripts/conformance.sh"]
async fn a_second_wasmcloud_host_takes_over_from_a_killed_one() {
    let mut lattice = ProcessLattice::start(
        "trellis controller + two wasmCloud hosts: failover",
        PLUGINS,
    )
    .unwrap();
    let (first, first_id) = add_wasmcloud_host(&mut lattice, &[]).await.unwrap();
    let (second, second_id) = add_wasmcloud_host(&mut lattice, &[]).await.unwrap();
    lattice.add_controller().await.unwrap();
    let api = lattice.api().await.unwrap();
    let app = lattice.write("web.yaml", &echo_app("v1", 1));
    trellis_app(
        &lattice,
        &["deploy", app.to_str().unwrap(), "--timeout", "60"],
    )
    .await;
    let running = lattice.instances(&api, "web-echo").await;
    let (victim, survivor) = if running.contains_key(&first_id) {
        (first, second_id)
    } else {
        (second, first_id)
    };
    let killed = Instant::now();
    lattice.kill(victim);
    wait_instances(&api, &survivor, "web-echo", 1).await;
    println!(
        "kill -9 of the wasmCloud host running echo → running on the other: {:?}",
        killed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real wasmCloud programs: scripts/conformance.sh"]
async fn wadm_drives_trellis_nodes_and_fails_over() {
    let mut lattice = ProcessLattice::start("wadm + two trellis nodes", &[]).unwrap();
    lattice.add_node(&[]).await.unwrap();
    lattice.add_node(&[]).await.unwrap();
    add_wadm(&mut lattice).await.unwrap();
    let api = lattice.api().await.unwrap();
    let address = format!("127.0.0.1:{}", free_port().unwrap());
    let file = write_echo(&lattice, "echowc", "v1", 1, &address);
    let wadm = wadm_client(&lattice).await;
    let manifest = std::fs::read(&file).unwrap();
    wadm.put_manifest(manifest).await.unwrap();
    wadm.deploy_manifest("echowc", None).await.unwrap();
    wait_deployed(&wadm, "echowc").await;
    assert_eq!(get(&address).await.unwrap().0, 200);

    // Kill the node running echo: wadm, which now gets claims and inventories from trellis
    // nodes, starts it on the other (after its own reaper notices, 70 s by default).
    let failover = kill_and_wait_elsewhere(&mut lattice, &api, "echowc-echo").await;
    println!("wadm on trellis nodes: kill -9 → echo elsewhere in {failover:?}");

    wadm.undeploy_manifest("echowc").await.unwrap();
    wait_until("the nodes empty", START_PATIENCE, || async {
        let running = lattice.everything_running(&api).await;
        if running.is_empty() {
            Ok(())
        } else {
            Err(format!("{running:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real wasmCloud programs: scripts/conformance.sh"]
async fn wash_works_against_trellis() {
    let mut lattice = ProcessLattice::start("wash against trellis", PLUGINS).unwrap();
    let node = lattice.add_node(&[]).await.unwrap();
    lattice.add_controller().await.unwrap();
    let host = lattice.procs[node].host_id.clone().unwrap();
    let address = format!("127.0.0.1:{}", free_port().unwrap());
    let file = write_echo(&lattice, "echowc", "v1", 1, &address);
    let file = file.to_str().unwrap();

    let steps: Vec<(Vec<&str>, &str)> = vec![
        (vec!["get", "hosts"], &host),
        (vec!["get", "inventory", &host], &host),
        (vec!["app", "put", file], "echowc"),
        (vec!["app", "deploy", "echowc"], "echowc"),
        (vec!["app", "list"], "echowc"),
    ];
    for (args, expect) in steps {
        let (code, out) = wash(&lattice, &args).await.unwrap();
        println!("wash {}: exit {code}", args.join(" "));
        assert_eq!(code, 0, "wash {}: {out}", args.join(" "));
        assert!(out.contains(expect), "wash {}: {out}", args.join(" "));
    }
    // wash's status lists each scaler too: wait for the app's own line.
    wait_until("wash app status: Deployed", START_PATIENCE, || async {
        let (_, out) = wash(&lattice, &["app", "status", "echowc"]).await.unwrap();
        let app_line = out
            .lines()
            .find(|l| l.contains("echowc"))
            .unwrap_or_default();
        if app_line.contains("Deployed") {
            Ok(())
        } else {
            Err(out)
        }
    })
    .await;
    println!("wash app status echowc: Deployed");
    answers(&address).await;
    for args in [
        vec!["app", "undeploy", "echowc"],
        vec!["app", "delete", "echowc"],
    ] {
        let (code, out) = wash(&lattice, &args).await.unwrap();
        println!("wash {}: exit {code}", args.join(" "));
        assert_eq!(code, 0, "wash {}: {out}", args.join(" "));
    }
    let (_, out) = wash(&lattice, &["app", "list"]).await.unwrap();
    assert!(!out.contains("echowc"), "{out}");
}

/// The two controllers side by side on the same kind of lattice (two trellis nodes, the echo
/// app deployed through the wadm API by the same client): time from deploy to Deployed, and
/// from kill -9 of the node running echo to echo running on the other, three runs each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real wasmCloud programs: scripts/conformance.sh"]
async fn side_by_side_deploy_and_failover() {
    let mut rows = Vec::new();
    for controller in ["trellis controller", "wadm 0.21.1"] {
        let mut deploys = Vec::new();
        let mut failovers = Vec::new();
        for run in 0..3 {
            let (deploy, failover) = one_run(controller, run).await;
            deploys.push(deploy);
            failovers.push(failover);
        }
        rows.push((controller, median(deploys), median(failovers)));
    }
    println!(
        "| controller (on two trellis nodes) | deploy → Deployed | kill -9 → running elsewhere |"
    );
    println!("|---|---:|---:|");
    for (controller, deploy, failover) in rows {
        println!("| {controller} | {deploy:.2?} | {failover:.1?} |");
    }
}

async fn one_run(controller: &str, run: usize) -> (Duration, Duration) {
    let mut lattice =
        ProcessLattice::start(&format!("side by side: {controller}, run {run}"), PLUGINS).unwrap();
    lattice.add_node(&[]).await.unwrap();
    lattice.add_node(&[]).await.unwrap();
    if controller.starts_with("wadm") {
        add_wadm(&mut lattice).await.unwrap();
    } else {
        // The controller's defaults: no --host-timeout of the suite's own.
        lattice.add_controller_defaults().await.unwrap();
    }
    // Both controllers get to know the lattice first (its hosts' heartbeats, a trellis
    // controller's first inventory round): what is measured is a deploy, not a start.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let api = lattice.api().await.unwrap();
    let wadm = wadm_client(&lattice).await;
    let manifest = echo_app("v1", 1);
    wadm.put_manifest(manifest.into_bytes()).await.unwrap();
    let started = Instant::now();
    wadm.deploy_manifest("web", None).await.unwrap();
    wait_deployed(&wadm, "web").await;
    let deploy = started.elapsed();

    let failover = kill_and_wait_elsewhere(&mut lattice, &api, "web-echo").await;
    (deploy, failover)
}

/// Kills (SIGKILL) the host running `component` and waits (up to 300 s: wadm's reaper is slow)
/// until it runs on another; returns how long that took.
async fn kill_and_wait_elsewhere(
    lattice: &mut ProcessLattice,
    api: &ApiClient,
    component: &str,
) -> Duration {
    let running = lattice.instances(api, component).await;
    let victim = lattice
        .procs
        .iter()
        .position(|p| p.host_id.as_ref().is_some_and(|h| running.contains_key(h)))
        .unwrap_or_else(|| panic!("no host runs {component}"));
    let killed = Instant::now();
    lattice.kill(victim);
    let lattice = &*lattice;
    wait_until(
        &format!("{component} elsewhere"),
        Duration::from_secs(300),
        || async {
            let running = lattice.instances(api, component).await;
            if running.values().sum::<u32>() >= 1 {
                Ok(())
            } else {
                Err(format!("{running:?}"))
            }
        },
    )
    .await;
    killed.elapsed()
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

async fn wadm_client(lattice: &ProcessLattice) -> wadm_client::Client {
    let nc = async_nats_wasmcloud::connect(lattice.nats.url())
        .await
        .unwrap();
    wadm_client::Client::from_nats_client(&lattice.lattice, None, nc)
}

async fn wait_deployed(wadm: &wadm_client::Client, name: &str) {
    let deadline = Instant::now() + START_PATIENCE;
    loop {
        if let Ok(status) = wadm.get_manifest_status(name).await {
            if status.info.status_type == wadm_types::api::StatusType::Deployed {
                return;
            }
            assert!(Instant::now() < deadline, "{name} not deployed: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
