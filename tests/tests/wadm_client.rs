//! The trellis controller driven by the official `wadm-client` 0.10 (what `wash app` uses),
//! unchanged: put, list, get, versions, deploy, status, undeploy, delete.

use std::time::{Duration, Instant};

use trellis_tests::{echo_manifest, http_get, TestLattice};
use wadm_types::api::StatusType;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wadm_client_manages_an_app_through_trellis() {
    let mut lattice = TestLattice::start(&["spreadscaler", "linkscaler"])
        .await
        .unwrap();
    lattice.add_node(&[]).await.unwrap();
    let nc = async_nats_wasmcloud::connect(lattice.nats.url())
        .await
        .unwrap();
    let wadm = wadm_client::Client::from_nats_client(&lattice.lattice, None, nc);
    let (manifest, address) = echo_manifest();
    let bytes = serde_json::to_vec(&manifest).unwrap();

    let (name, version) = wadm.put_manifest(bytes).await.unwrap();
    assert_eq!((name.as_str(), version.as_str()), ("echo", "v0.1.0"));
    let listed = wadm.list_manifests().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "echo");
    assert_eq!(listed[0].deployed_version, None);
    let got = wadm.get_manifest("echo", None).await.unwrap();
    assert_eq!(got.metadata.name, "echo");
    assert_eq!(got.spec.components.len(), 2);
    let versions = wadm.list_versions("echo").await.unwrap();
    assert_eq!(versions.len(), 1);
    assert!(!versions[0].deployed);

    wadm.deploy_manifest("echo", None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = wadm.get_manifest_status("echo").await.unwrap();
        if status.info.status_type == StatusType::Deployed {
            assert!(!status.scalers.is_empty());
            break;
        }
        assert_ne!(status.info.status_type, StatusType::Failed, "{status:?}");
        assert!(Instant::now() < deadline, "not deployed: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let probe = address.clone();
    let (code, _) =
        tokio::task::spawn_blocking(move || http_get(&probe, "/", Duration::from_secs(10)))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(code, 200);
    assert!(wadm.list_versions("echo").await.unwrap()[0].deployed);

    wadm.undeploy_manifest("echo").await.unwrap();
    let status = wadm.get_manifest_status("echo").await.unwrap();
    assert_eq!(status.info.status_type, StatusType::Undeployed);
    // Undeploy removes what the app ran: the HTTP listener goes away.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&address).is_ok() {
        assert!(
            Instant::now() < deadline,
            "{address} still serves after undeploy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert!(wadm.delete_manifest("echo", None).await.unwrap());
    assert!(wadm.list_manifests().await.unwrap().is_empty());
    assert!(wadm.get_manifest("echo", None).await.is_err());
}

/// The data of a CloudEvent as JSON, however the SDK holds it.
fn data_of(event: &cloudevents::Event) -> serde_json::Value {
    use cloudevents::Data;
    match event.data() {
        Some(Data::Json(value)) => value.clone(),
        Some(Data::String(text)) => serde_json::from_str(text).unwrap(),
        Some(Data::Binary(bytes)) => serde_json::from_slice(bytes).unwrap(),
        None => serde_json::Value::Null,
    }
}

/// The next message on `events` (within 10 s): its subject and the CloudEvent it carries.
async fn next_event(events: &mut async_nats_wasmcloud::Subscriber) -> (String, cloudevents::Event) {
    use futures::StreamExt;
    let msg = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .expect("the subscription lives");
    let event = serde_json::from_slice(&msg.payload).unwrap_or_else(|e| {
        panic!(
            "not a CloudEvent ({e}): {}",
            String::from_utf8_lossy(&msg.payload)
        )
    });
    (msg.subject.to_string(), event)
}

/// `model.get` without a name, as wadm 0.21 answers it, read with wadm-types' own type.
async fn list_on_model_get(
    nc: &async_nats_wasmcloud::Client,
    prefix: &str,
    lattice: &str,
) -> wadm_types::api::ListModelsResponse {
    let reply = nc
        .request(format!("{prefix}.{lattice}.model.get"), Vec::new().into())
        .await
        .unwrap();
    let raw: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    // wadm's shape exactly: no field of trellis's when it succeeds.
    let mut keys: Vec<&str> = raw
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort();
    assert_eq!(keys, ["message", "models", "result"], "{raw}");
    serde_json::from_value(raw).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wadm_lists_on_model_get_and_deploys_publish_wadms_manifest_events() {
    use cloudevents::AttributesReader;
    use wadm_types::api::GetResult;

    // No node: the events come from the API, whatever runs.
    let lattice = TestLattice::start(&["spreadscaler", "linkscaler"])
        .await
        .unwrap();
    let nc = async_nats_wasmcloud::connect(lattice.nats.url())
        .await
        .unwrap();
    let mut events = nc
        .subscribe(format!("wadm.evt.{}.>", lattice.lattice))
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let wadm = wadm_client::Client::from_nats_client(&lattice.lattice, None, nc.clone());
    let (manifest, _) = echo_manifest();
    wadm.put_manifest(serde_json::to_vec(&manifest).unwrap())
        .await
        .unwrap();
    let api = lattice.api().await.unwrap();
    let put = api
        .put_text(&trellis_tests::echo_app("v1", 1))
        .await
        .unwrap();
    assert_eq!(put.name, "web");

    // Listed on `model.get` (wadm 0.21) and on `model.list` (what wadm-client 0.10 asks).
    let listed = list_on_model_get(&nc, "wadm.api", &lattice.lattice).await;
    assert_eq!(listed.result, GetResult::Success);
    assert_eq!(listed.message, "Successfully fetched list of applications");
    let names: Vec<&str> = listed.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["echo", "web"]);
    assert!(listed.models.iter().all(|m| m.deployed_version.is_none()));
    assert_eq!(listed.models[0].version, "v0.1.0");
    let old_list = wadm.list_manifests().await.unwrap();
    let old_names: Vec<&str> = old_list.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(old_names, names);

    // Deploy: `manifest_published`, the deployed manifest as data, readable as wadm's.
    wadm.deploy_manifest("echo", None).await.unwrap();
    let (subject, event) = next_event(&mut events).await;
    assert_eq!(
        subject,
        format!("wadm.evt.{}.manifest_published", lattice.lattice)
    );
    assert_eq!(event.ty(), "com.wadm.manifest_published");
    assert_eq!(event.source().to_string(), "wadm");
    let published: wadm_types::Manifest = serde_json::from_value(data_of(&event)).unwrap();
    assert_eq!(published.metadata.name, "echo");
    assert_eq!(published.version(), "v0.1.0");
    assert_eq!(published.spec.components.len(), 2);
    let listed = list_on_model_get(&nc, "wadm.api", &lattice.lattice).await;
    assert_eq!(listed.models[0].deployed_version.as_deref(), Some("v0.1.0"));

    // Undeploy: `manifest_unpublished` with the app's name.
    wadm.undeploy_manifest("echo").await.unwrap();
    let (subject, event) = next_event(&mut events).await;
    assert_eq!(
        subject,
        format!("wadm.evt.{}.manifest_unpublished", lattice.lattice)
    );
    assert_eq!(event.ty(), "com.wadm.manifest_unpublished");
    assert_eq!(event.source().to_string(), "wadm");
    assert_eq!(data_of(&event), serde_json::json!({"name": "echo"}));

    // Deleting a whole app unpublishes it too, as in wadm (deployed or not).
    assert!(wadm.delete_manifest("web", None).await.unwrap());
    let (subject, event) = next_event(&mut events).await;
    assert!(subject.ends_with(".manifest_unpublished"), "{subject}");
    assert_eq!(data_of(&event), serde_json::json!({"name": "web"}));
    // And nothing else was published on the way.
    use futures::StreamExt;
    let more = tokio::time::timeout(Duration::from_millis(300), events.next()).await;
    assert!(more.is_err(), "unexpected event {more:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_with_an_api_prefix_answers_there_and_not_on_wadm_api() {
    let mut lattice = trellis_tests::process::ProcessLattice::start(
        "api_prefix",
        &["spreadscaler", "linkscaler"],
    )
    .unwrap();
    let http = format!(
        "127.0.0.1:{}",
        trellis_cli::nats_server::free_port().unwrap()
    );
    lattice
        .add_controller_with(&["--api-prefix", "acme.wadm", "--http", &http])
        .await
        .unwrap();
    let nc = async_nats_wasmcloud::connect(lattice.nats.url())
        .await
        .unwrap();
    let wadm =
        wadm_client::Client::from_nats_client(&lattice.lattice, Some("acme.wadm"), nc.clone());
    let (manifest, _) = echo_manifest();
    let (name, _) = wadm
        .put_manifest(serde_json::to_vec(&manifest).unwrap())
        .await
        .unwrap();
    assert_eq!(name, "echo");
    assert_eq!(wadm.list_manifests().await.unwrap().len(), 1);
    let listed = list_on_model_get(&nc, "acme.wadm", &lattice.lattice).await;
    assert_eq!(listed.models.len(), 1);

    // Nobody answers under the default prefix.
    let default = wadm_client::Client::from_nats_client(&lattice.lattice, None, nc.clone());
    let err = default.list_manifests().await.unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("no responders"),
        "{err}"
    );

    // The CLI asks where it is told to.
    let out = lattice
        .cli(&["app", "list", "--api-prefix", "acme.wadm", "-o", "json"])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{}", out.text());
    assert!(out.stdout.contains("\"echo\""), "{}", out.text());
    let out = lattice.cli(&["app", "list"]).await.unwrap();
    assert_ne!(out.code, 0, "{}", out.text());
    assert!(
        out.stderr.contains("wadm.api.e2e.model.list"),
        "{}",
        out.text()
    );

    // The controller's HTTP API asks under the prefix too.
    let (code, body) = tokio::task::spawn_blocking(move || {
        http_get(&http, "/api/v1/apps", Duration::from_secs(10))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"echo\""), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_keeps_its_buckets_in_the_jetstream_domain_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nats.conf");
    std::fs::write(&config, "jetstream {\n  domain: hub\n}\n").unwrap();
    let nats = trellis_cli::nats_server::NatsServer::start_with_args(
        0,
        &dir.path().join("data"),
        vec!["-c".into(), config.display().to_string()],
    )
    .unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for name in ["spreadscaler", "linkscaler"] {
        std::fs::copy(
            trellis_tests::built_plugin(name),
            plugins.join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    let config = |domain: &str| trellis_controller::ControllerConfig {
        nats_url: nats.url(),
        lattices: vec!["dom".into()],
        plugin_dir: plugins.clone(),
        settings: trellis_tests::fast_settings(),
        jetstream_domain: Some(domain.into()),
        ..Default::default()
    };

    // A domain no server has: the controller cannot open its store, and says where it looked.
    let err = match trellis_controller::Controller::start(config("elsewhere")).await {
        Ok(_) => panic!("a controller started on JetStream domain `elsewhere`"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("JetStream domain elsewhere"), "{err}");

    let controller = trellis_controller::Controller::start(config("hub"))
        .await
        .unwrap();
    let nc = async_nats_wasmcloud::connect(nats.url()).await.unwrap();
    let wadm = wadm_client::Client::from_nats_client("dom", None, nc);
    let (manifest, _) = echo_manifest();
    wadm.put_manifest(serde_json::to_vec(&manifest).unwrap())
        .await
        .unwrap();
    wadm.deploy_manifest("echo", None).await.unwrap();
    let versions = wadm.list_versions("echo").await.unwrap();
    assert!(versions[0].deployed);

    // Nodes keep links, configs and key-value in the domain they are given, and say so when
    // no server has it.
    let node_config = |domain: &str| trellis_node::NodeConfig {
        nats_url: nats.url(),
        lattice: "dom".into(),
        allowed_image_dirs: vec![trellis_tests::repo_root().join("build")],
        jetstream_domain: Some(domain.into()),
        ..Default::default()
    };
    let err = match trellis_node::Node::start(node_config("elsewhere")).await {
        Ok(_) => panic!("a node started on JetStream domain `elsewhere`"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("JetStream domain elsewhere"), "{err}");
    let node = trellis_node::Node::start(node_config("hub")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while wadm
        .get_manifest_status("echo")
        .await
        .unwrap()
        .info
        .status_type
        != StatusType::Deployed
    {
        assert!(
            Instant::now() < deadline,
            "echo not deployed on the hub's node"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The manifest is in the bucket of domain `hub`.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::with_domain(client, "hub");
    let kv = js
        .get_key_value(trellis_controller::store::bucket("dom"))
        .await
        .unwrap();
    assert!(kv.get("echo").await.unwrap().is_some());
    // And so are the app's link and its config, which the node reads.
    let links = js
        .get_key_value(trellis_lattice::ctl::link_bucket("dom"))
        .await
        .unwrap();
    assert!(links
        .get("COMPONENT_echo-httpserver")
        .await
        .unwrap()
        .is_some());
    node.stop().await.unwrap();
    controller.stop().await;
}
