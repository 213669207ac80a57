//! High availability: three controllers serve one lattice of three real nodes. The owner of an
//! app is killed (abruptly: no lease released) while the app scales; another controller takes
//! the app over within seconds and finishes the job; every control command on the lattice is
//! counted and none was sent twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use trellis_cli::client::ApiClient;
use trellis_cli::nats_server::NatsServer;
use trellis_controller::ownership::{owners_bucket, OwnerRecord};
use trellis_controller::{Controller, ControllerConfig};
use trellis_lattice::api::{DeployResult, PutResult, StatusType};
use trellis_node::{Node, NodeConfig};
use trellis_tests::{built_plugin, echo_app, fast_settings, repo_root};

const LATTICE: &str = "ha";

/// The owner of `app` as the owners bucket says.
async fn owner(js: &async_nats::jetstream::Context, app: &str) -> Option<String> {
    let owners = js.get_key_value(owners_bucket(LATTICE)).await.ok()?;
    let value = owners.get(app).await.ok()??;
    serde_json::from_slice::<OwnerRecord>(&value)
        .ok()
        .map(|r| r.owner)
}

/// Instances of `component` per host, from the hosts' own inventories.
async fn instances(api: &ApiClient, component: &str) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    for host in api.hosts().await.unwrap() {
        let inventory = api.inventory(&host.id).await.unwrap();
        for c in inventory.components.iter().filter(|c| c.id == component) {
            out.insert(host.id.clone(), c.max_instances);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_apps_owner_mid_scale_hands_it_over_without_duplicate_commands() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(0, &dir.path().join("nats")).unwrap();
    let plugin_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugin_dir).unwrap();
    std::fs::copy(
        built_plugin("spreadscaler"),
        plugin_dir.join("spreadscaler.wasm"),
    )
    .unwrap();

    // Every control-interface command on the lattice, as sent.
    let observer = async_nats::connect(nats.url()).await.unwrap();
    let mut ctl = observer
        .subscribe(format!("wasmbus.ctl.v1.{LATTICE}.>"))
        .await
        .unwrap();
    observer.flush().await.unwrap();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let recorder = tokio::spawn(async move {
        while let Some(msg) = ctl.next().await {
            let subject = msg.subject.to_string();
            // Queries (ping, inventory) are not commands: every controller starts with them.
            if subject.contains(".host.") {
                continue;
            }
            let _ = seen_tx.send((Instant::now(), subject, msg.payload.to_vec()));
        }
    });

    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(
            Node::start(NodeConfig {
                nats_url: nats.url(),
                lattice: LATTICE.into(),
                heartbeat_interval: Duration::from_secs(1),
                allowed_image_dirs: vec![repo_root().join("build")],
                ..NodeConfig::default()
            })
            .await
            .unwrap(),
        );
    }
    let mut controllers = Vec::new();
    for _ in 0..3 {
        // Each controller has its own NATS connection, as separate processes would.
        controllers.push(Some(
            Controller::start(ControllerConfig {
                nats_url: nats.url(),
                lattices: vec![LATTICE.into()],
                plugin_dir: plugin_dir.clone(),
                settings: fast_settings(),
                ..ControllerConfig::default()
            })
            .await
            .unwrap(),
        ));
    }
    let api = ApiClient::connect(&nats.url(), LATTICE).await.unwrap();
    let js = async_nats::jetstream::new(observer.clone());

    let put = api.put_text(&echo_app("v1", 3)).await.unwrap();
    assert_eq!(put.result, PutResult::Created, "{}", put.message);
    api.deploy("web", Some("v1")).await.unwrap();
    api.wait_deployed("web", Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    let first_owner = owner(&js, "web").await.expect("web has an owner");
    let victim = controllers
        .iter()
        .position(|c| c.as_ref().unwrap().id(LATTICE).as_deref() == Some(first_owner.as_str()))
        .expect("the owner is one of the three controllers");
    while seen_rx.try_recv().is_ok() {}

    // Scale up, and kill the owner as soon as its first command of the new version is out:
    // the nodes are still loading the component when it dies.
    let put = api.put_text(&echo_app("v2", 9)).await.unwrap();
    assert_eq!(put.result, PutResult::NewVersion, "{}", put.message);
    let deploy = api.deploy("web", Some("v2")).await.unwrap();
    assert_eq!(
        deploy.result,
        DeployResult::Acknowledged,
        "{}",
        deploy.message
    );
    let mut commands = Vec::new();
    let first = tokio::time::timeout(Duration::from_secs(10), seen_rx.recv())
        .await
        .expect("the owner starts scaling")
        .unwrap();
    controllers[victim].take().unwrap().stop().await;
    let killed = Instant::now();
    commands.push(first);

    // Another controller takes the app over within seconds.
    let new_owner = loop {
        match owner(&js, "web").await {
            Some(o) if o != first_owner => break o,
            _ => {}
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "nobody took the app over within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let takeover = killed.elapsed();
    assert!(
        controllers
            .iter()
            .flatten()
            .any(|c| c.id(LATTICE).as_deref() == Some(new_owner.as_str())),
        "the new owner is a live controller"
    );

    // The final state is right: nine instances over the three nodes, status deployed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let running = instances(&api, "web-echo").await;
        if running.values().sum::<u32>() == 9 && running.len() == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "not scaled to 9: {running:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = api
        .wait_deployed("web", Duration::from_secs(10), |_| {})
        .await
        .unwrap();
    assert_eq!(status.info.status_type, StatusType::Deployed);

    // Let any late or repeated command show, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while let Ok(c) = seen_rx.try_recv() {
        commands.push(c);
    }
    recorder.abort();
    let mut counts: HashMap<(String, Vec<u8>), usize> = HashMap::new();
    for (_, subject, body) in &commands {
        *counts.entry((subject.clone(), body.clone())).or_default() += 1;
    }
    let duplicated: Vec<_> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|((subject, body), n)| format!("{n}× {subject} {}", String::from_utf8_lossy(body)))
        .collect();
    assert!(
        duplicated.is_empty(),
        "commands sent twice: {duplicated:#?}"
    );
    let scales = commands
        .iter()
        .filter(|(_, s, _)| s.contains(".component.scale."))
        .count();
    assert_eq!(scales, 3, "one scale command per node: {commands:?}");
    eprintln!(
        "owner killed mid-scale; {new_owner} took over after {takeover:?}; {} command(s), none twice",
        commands.len()
    );

    for controller in controllers.into_iter().flatten() {
        controller.stop().await;
    }
    for node in nodes {
        node.stop().await.unwrap();
    }
}
