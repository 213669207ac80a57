//! Plugins under a running controller: a faulty plugin fails only its own app, and a replaced
//! plugin file takes effect without a restart.

use std::time::{Duration, Instant};

use futures::StreamExt;
use trellis_cli::client::load_manifest_file;
use trellis_lattice::api::{PutResult, Status, StatusType};
use trellis_lattice::Manifest;
use trellis_tests::{built_example, built_fixture, install_file, repo_root, TestLattice};

/// An app of one echo component whose only trait is `trait_type` (handled by a fixture).
fn app_with_trait(name: &str, trait_type: &str) -> Manifest {
    let echo = built_example("echo");
    Manifest::parse(&format!(
        r#"
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {name}
  annotations:
    version: v1
spec:
  components:
    - name: web
      type: component
      properties:
        image: file://{}
      traits:
        - type: {trait_type}
          properties: {{}}
"#,
        echo.display()
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_plugin_fails_its_app_and_other_apps_still_deploy() {
    let mut lattice = TestLattice::start(&["spreadscaler", "linkscaler"])
        .await
        .unwrap();
    std::fs::copy(
        built_fixture("spin"),
        lattice.plugin_dir().join("spin.wasm"),
    )
    .unwrap();
    let generation = lattice.controller.as_ref().unwrap().runtime().generation();
    lattice.wait_plugin_reload(generation).await.unwrap();
    lattice.add_node(&[]).await.unwrap();
    let api = lattice.api().await.unwrap();

    let stuck = app_with_trait("stuck", "spin");
    assert_eq!(api.put(&stuck).await.unwrap().result, PutResult::Created);
    api.deploy("stuck", None).await.unwrap();

    let mut echo = load_manifest_file(&repo_root().join("examples/echo/app.yaml")).unwrap();
    // Only the component: this test is about the controller, not HTTP.
    echo.spec.components.retain(|c| c.name == "echo");
    assert_eq!(api.put(&echo).await.unwrap().result, PutResult::Created);
    api.deploy("echo", None).await.unwrap();

    let deployed = api
        .wait_deployed("echo", Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    assert_eq!(deployed.info.status_type, StatusType::Deployed);
    let err = api
        .wait_deployed("stuck", Duration::from_secs(10), |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("fixture-spin"), "{err}");
    assert!(err.contains("deadline"), "{err}");

    // `trellis plugin list` (the same API request) counts the timeouts against the plugin.
    let list = api.plugins().await.unwrap();
    let spin = list
        .plugins
        .iter()
        .find(|p| p.name == "fixture-spin")
        .expect("the looping plugin stays listed");
    assert!(
        spin.failures.get("timeout").copied().unwrap_or(0) >= 1,
        "{spin:?}"
    );
    let spread = list
        .plugins
        .iter()
        .find(|p| p.name == "spreadscaler")
        .unwrap();
    assert!(spread.calls > 1 && spread.failures.is_empty(), "{spread:?}");
    assert!(spread.p50_us.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_plugin_changes_decisions_without_a_restart_or_a_failed_pass() {
    let mut lattice = TestLattice::start(&[]).await.unwrap();
    let plugin = lattice.plugin_dir().join("fixed.wasm");
    install_file(&built_fixture("fixed"), &plugin).unwrap();
    let generation = lattice.controller.as_ref().unwrap().runtime().generation();
    lattice.wait_plugin_reload(generation).await.unwrap();
    lattice.add_node(&[]).await.unwrap();
    let api = lattice.api().await.unwrap();
    let client = async_nats::connect(lattice.nats.url()).await.unwrap();
    let mut updates = client
        .subscribe(format!("wadm.status.{}.pinned", lattice.lattice))
        .await
        .unwrap();

    assert_eq!(
        api.put(&app_with_trait("pinned", "fixed"))
            .await
            .unwrap()
            .result,
        PutResult::Created
    );
    api.deploy("pinned", None).await.unwrap();
    let said = |status: &Status, n: u32| status.info.message.contains(&format!("asking for {n}"));
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.last().is_some_and(|s| said(s, 1)) {
        let msg = tokio::time::timeout_at(deadline.into(), updates.next())
            .await
            .expect("the first version's decision within 30s")
            .unwrap();
        seen.push(serde_json::from_slice::<Status>(&msg.payload).unwrap());
    }

    let swapped = Instant::now();
    install_file(&built_fixture("fixed-2"), &plugin).unwrap();
    let mut between = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), updates.next())
            .await
            .expect("the new version's decision within 10s")
            .unwrap();
        let status: Status = serde_json::from_slice(&msg.payload).unwrap();
        let done = said(&status, 2);
        between.push(status);
        if done {
            break;
        }
    }
    println!(
        "new plugin version decided {:?} after the file was replaced",
        swapped.elapsed()
    );
    for status in &between {
        assert_ne!(status.info.status_type, StatusType::Failed, "{status:?}");
    }
}
