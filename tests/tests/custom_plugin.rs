//! The custom-plugin story end to end: a manifest using the example `failover` trait is
//! refused while its plugin is absent; once the plugin's .wasm is copied into the running
//! controller's folder, the same manifest validates, deploys, and behaves as the plugin says
//! (instances in the preferred region, moving to the standby region when it has no host).
//! Also: the built-in validator and the scalers' own checks refuse bad manifests, and nothing
//! is stored.

use std::time::{Duration, Instant};

use trellis_lattice::api::{PutResult, Severity, StatusType};
use trellis_tests::{built_example, install_file, repo_root, TestLattice};

/// The echo component's lattice id: `{app}-{name}`, with the app name's dashes made
/// underscores as wadm does.
const COMPONENT_ID: &str = "failover_echo-echo";

/// Instances of `component` per host region, as the hosts' inventories say.
async fn instances(api: &trellis_cli::client::ApiClient, component: &str) -> Vec<(String, u32)> {
    let mut found = Vec::new();
    for host in api.hosts().await.unwrap() {
        let inventory = api.inventory(&host.id).await.unwrap();
        for c in inventory.components.iter().filter(|c| c.id == component) {
            found.push((host.labels["region"].clone(), c.max_instances));
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_trait_is_refused_until_its_plugin_is_dropped_in_then_deploys() {
    let mut lattice = TestLattice::start(&["spreadscaler", "linkscaler", "validator", "placement"])
        .await
        .unwrap();
    lattice.add_node(&[("region", "east")]).await.unwrap();
    lattice.add_node(&[("region", "west")]).await.unwrap();
    let api = lattice.api().await.unwrap();
    let manifest = trellis_cli::client::load_manifest_file(
        &repo_root().join("examples/failover-scaler/app.yaml"),
    )
    .unwrap();
    let text = serde_json::to_string(&manifest).unwrap();

    // Without the plugin: `trellis app validate` and `put` both refuse it, with a hint.
    let validation = api.validate(&text).await.unwrap();
    assert!(!validation.valid, "{validation:?}");
    let unknown = validation
        .diagnostics
        .iter()
        .find(|d| d.severity == Severity::Error)
        .unwrap();
    assert_eq!(unknown.path, "spec.components[0].traits[0].type");
    assert!(
        unknown.message.contains("unknown trait type `failover`"),
        "{unknown:?}"
    );
    assert!(unknown.message.contains("spreadscaler"), "{unknown:?}");
    assert!(unknown.hint.contains("plugin"), "{unknown:?}");
    let put = api.put(&manifest).await.unwrap();
    assert_eq!(put.result, PutResult::Error);
    assert!(put.message.contains("failover"), "{}", put.message);
    assert!(api.list().await.unwrap().is_empty(), "nothing stored");

    // Drop the plugin in: no restart.
    let generation = lattice.controller.as_ref().unwrap().runtime().generation();
    install_file(
        &built_example("failover"),
        &lattice.plugin_dir().join("failover.wasm"),
    )
    .unwrap();
    lattice.wait_plugin_reload(generation).await.unwrap();
    let validation = api.validate(&text).await.unwrap();
    assert!(validation.valid, "{validation:?}");

    assert_eq!(api.put(&manifest).await.unwrap().result, PutResult::Created);
    api.deploy("failover-echo", None).await.unwrap();
    let status = api
        .wait_deployed("failover-echo", Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    assert_eq!(status.info.status_type, StatusType::Deployed);
    assert_eq!(
        instances(&api, COMPONENT_ID).await,
        [("east".to_string(), 2)],
        "both instances in the primary tier, none in the standby"
    );

    // The east host goes away: the plugin moves the instances to the standby tier.
    let east = lattice.nodes.remove(0);
    east.stop().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = instances(&api, COMPONENT_ID).await;
        if now == [("west".to_string(), 2)] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "instances did not fail over to west: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_are_refused_with_paths_and_hints_and_nothing_is_stored() {
    let lattice = TestLattice::start(&["spreadscaler", "linkscaler", "validator"])
        .await
        .unwrap();
    let api = lattice.api().await.unwrap();
    let bad = r#"
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: shop
  annotations:
    version: v1
spec:
  components:
    - name: web
      type: component
      properties:
        image: file:///web.wasm
      traits:
        - type: spreadscaler
          properties:
            instances: many
    - name: web
      type: capability
      properties:
        image: builtin:http-server
      traits:
        - type: link
          properties:
            namespace: wasi
            package: http
            interfaces: [incoming-handler]
            target: wbe
"#;
    let validation = api.validate(bad).await.unwrap();
    assert!(!validation.valid);
    let at = |path: &str| {
        validation
            .diagnostics
            .iter()
            .find(|d| d.path == path)
            .unwrap_or_else(|| panic!("no finding at {path}: {validation:#?}"))
    };
    // The spreadscaler plugin checks its own properties.
    let instances = at("spec.components[0].traits[0].properties.instances");
    assert_eq!(instances.source, "spreadscaler");
    // The validator plugin: duplicate names, a link target that does not exist.
    assert!(at("spec.components[1].name")
        .message
        .contains("already used"));
    let target = at("spec.components[1].traits[0].properties.target");
    assert!(target.message.contains("'wbe'"), "{target:?}");
    assert!(target.hint.contains("did you mean 'web'"), "{target:?}");

    let put = api.put_text(bad).await.unwrap();
    assert_eq!(put.result, PutResult::Error);
    assert!(put.message.contains("errors:"), "{}", put.message);
    assert!(api.list().await.unwrap().is_empty(), "nothing stored");

    // Syntax errors name the line, through the same request.
    let broken = api.validate("apiVersion: [unclosed\n").await.unwrap();
    assert!(!broken.valid);
    assert!(broken.diagnostics[0].message.contains("line"), "{broken:?}");
}
