//! The walking skeleton, end to end: a manifest goes in through the NATS API, the spreadscaler
//! plugin decides, a node runs the echo component, and HTTP gets an answer.

use std::time::Duration;

use trellis_lattice::api::{DeployResult, PutResult, StatusType};
use trellis_tests::{echo_manifest, http_get, repo_root, TestLattice};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_deploys_and_answers_http() {
    let mut lattice = TestLattice::start(&["spreadscaler", "linkscaler"])
        .await
        .unwrap();
    lattice.add_node(&[("zone", "local")]).await.unwrap();
    let api = lattice.api().await.unwrap();
    let (manifest, address) = echo_manifest();

    let put = api.put(&manifest).await.unwrap();
    assert_eq!(put.result, PutResult::Created, "{}", put.message);
    let deploy = api.deploy("echo", None).await.unwrap();
    assert_eq!(
        deploy.result,
        DeployResult::Acknowledged,
        "{}",
        deploy.message
    );

    let status = api
        .wait_deployed("echo", Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    assert_eq!(status.info.status_type, StatusType::Deployed);
    assert!(status.scalers.len() >= 3, "{status:?}");

    let (code, body) = tokio::task::spawn_blocking(move || {
        http_get(&address, "/hello/trellis", Duration::from_secs(10))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("GET /hello/trellis"), "{body}");

    // What `trellis get hosts` and `trellis get inventory` show.
    let hosts = api.hosts().await.unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(
        hosts[0].labels.get("zone").map(String::as_str),
        Some("local")
    );
    let inventory = api.inventory(&hosts[0].id).await.unwrap();
    let echo = inventory
        .components
        .iter()
        .find(|c| c.id == "echo-echo")
        .expect("echo runs on the node");
    assert_eq!(echo.max_instances, 1);
    let annotations = echo.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("wasmcloud.dev/managed-by")
            .map(String::as_str),
        Some("trellis")
    );
    assert_eq!(
        annotations.get("wasmcloud.dev/appspec").map(String::as_str),
        Some("echo")
    );

    let list = api.list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].deployed_version.as_deref(), Some("v0.1.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_scaler_plugin_is_reported_in_status() {
    let mut lattice = TestLattice::start(&["spreadscaler", "linkscaler"])
        .await
        .unwrap();
    lattice.add_node(&[]).await.unwrap();
    let api = lattice.api().await.unwrap();
    let (manifest, _) = echo_manifest();
    let put = api.put(&manifest).await.unwrap();
    assert_eq!(put.result, PutResult::Created, "{}", put.message);

    let runtime = lattice.controller.as_ref().unwrap().runtime().clone();
    let generation = runtime.generation();
    std::fs::remove_file(lattice.plugin_dir().join("spreadscaler.wasm")).unwrap();
    lattice.wait_plugin_reload(generation).await.unwrap();

    let deploy = api.deploy("echo", None).await.unwrap();
    assert_eq!(deploy.result, DeployResult::Acknowledged);
    let err = api
        .wait_deployed("echo", Duration::from_secs(20), |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no plugin handles trait type `spreadscaler`"),
        "{err}"
    );
    // The controller is still serving: the API answers and the link scaler still ran.
    let status = api.status("echo").await.unwrap().status.unwrap();
    assert_eq!(status.info.status_type, StatusType::Failed);
    assert!(status
        .scalers
        .iter()
        .any(|s| s.kind == "link" && s.info.status_type != StatusType::Failed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_manifest_is_refused_with_its_line() {
    let lattice = TestLattice::start(&["spreadscaler", "linkscaler"])
        .await
        .unwrap();
    let api = lattice.api().await.unwrap();
    let bad = "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: broken\n  annotations: [unclosed\n";
    let put = api.put_text(bad).await.unwrap();
    assert_eq!(put.result, PutResult::Error);
    assert!(put.message.contains("line"), "{}", put.message);

    let unknown = std::fs::read_to_string(repo_root().join("examples/echo/app.yaml"))
        .unwrap()
        .replace("type: spreadscaler", "type: spreadscalar");
    let put = api.put_text(&unknown).await.unwrap();
    assert_eq!(put.result, PutResult::Error);
    assert!(
        put.message.contains("unknown trait type `spreadscalar`")
            && put.message.contains("did you mean `spreadscaler`?"),
        "{}",
        put.message
    );
    assert!(api.list().await.unwrap().is_empty(), "nothing is stored");
}

/// A new version that drops one trait cleans up only that trait's work: the link goes, the
/// provider and component it leaves in place keep running (no stop-then-start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_dropping_a_trait_cleans_up_only_that_trait() {
    use futures::StreamExt;

    let (lattice, api, manifest, address) = TestLattice::with_echo_deployed().await.unwrap();

    let client = async_nats::connect(lattice.nats.url()).await.unwrap();
    let mut stops = client
        .subscribe(format!("wasmbus.evt.{}.provider_stopped", lattice.lattice))
        .await
        .unwrap();
    let mut scaled = client
        .subscribe(format!("wasmbus.evt.{}.component_scaled", lattice.lattice))
        .await
        .unwrap();
    let mut v2 = manifest.clone();
    v2.metadata
        .annotations
        .insert("version".into(), "v0.2.0".into());
    for component in &mut v2.spec.components {
        if let Some(traits) = &mut component.traits {
            traits.retain(|t| t.trait_type != "link");
        }
    }
    assert_eq!(api.put(&v2).await.unwrap().result, PutResult::NewVersion);
    api.deploy("echo", Some("v0.2.0")).await.unwrap();

    // The link's cleanup closes the listener.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&address).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "{address} still served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Cleanup commands go out in one pass; give any stray ones time to show.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stray_stop = tokio::time::timeout(Duration::from_millis(10), stops.next()).await;
    assert!(
        stray_stop.is_err(),
        "the provider was stopped: {stray_stop:?}"
    );
    let stray_scale = tokio::time::timeout(Duration::from_millis(10), scaled.next()).await;
    assert!(
        stray_scale.is_err(),
        "the component was rescaled: {stray_scale:?}"
    );
    let status = api.status("echo").await.unwrap().status.unwrap();
    assert_eq!(status.info.status_type, StatusType::Deployed, "{status:?}");
}
