use serde_json::json;
use trellis_lattice::api::{HostSplit, RolloutTarget};
use trellis_lattice::Manifest;

use super::*;

/// App `shop` at `version`: component `web` (2 instances by spreadscaler, a config with
/// properties and one without) and an HTTP server linked to it on port 8080.
fn shop(version: &str) -> Manifest {
    Manifest::parse(&format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: shop
  annotations:
    version: {version}
spec:
  policies:
    - name: rollout
      type: canary
      properties:
        steps: "50,100"
  components:
    - name: web
      type: component
      properties:
        image: file:///web-{version}.wasm
        config:
          - name: greeting
            properties:
              text: hello
          - name: shared-secrets
      traits:
        - type: spreadscaler
          properties:
            instances: 4
    - name: http
      type: capability
      properties:
        image: builtin:http-server
      traits:
        - type: spreadscaler
          properties:
            instances: 1
        - type: link
          properties:
            target: web
            namespace: wasi
            package: http
            interfaces: [incoming-handler]
            source:
              config:
                - name: shop-http
                  properties:
                    address: 0.0.0.0:8080
"#
    ))
    .unwrap()
}

fn component<'a>(m: &'a Manifest, name: &str) -> &'a Component {
    m.spec.components.iter().find(|c| c.name == name).unwrap()
}

#[test]
fn a_versioned_manifest_has_ids_and_defined_configs_of_its_own() {
    let v2 = versioned(&shop("2.0"), &shop("1.0"));
    let web = component(&v2, "web");
    assert_eq!(v2.component_id(web), "shop-web-2_0");
    let configs: Vec<&str> = web
        .properties
        .config
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        configs,
        vec!["greeting-2_0", "shared-secrets"],
        "only configs it defines"
    );
    let link = &component(&v2, "http").traits.as_ref().unwrap()[1].properties;
    assert_eq!(link["source"]["config"][0]["name"], "shop-http-2_0");
    assert_eq!(link["target"], "web", "names stay: only ids change");
    // The HTTP server is the same in both versions: shared, its new link named apart.
    assert_eq!(v2.component_id(component(&v2, "http")), "shop-http");
    assert_eq!(link["name"], "default-2_0");
}

#[test]
fn a_provider_that_changed_is_not_shared() {
    let mut old = shop("1.0");
    old.spec.components[1].properties.image = Some("builtin:http-server-old".into());
    let v2 = versioned(&shop("2.0"), &old);
    assert_eq!(v2.component_id(component(&v2, "http")), "shop-http-2_0");
    let link = &component(&v2, "http").traits.as_ref().unwrap()[1].properties;
    assert!(
        link.get("name").is_none(),
        "its own provider: the link keeps its name"
    );
}

#[test]
fn during_a_step_both_versions_run_at_their_shares_with_weighted_links() {
    let old = shop("1.0");
    let new = versioned(&shop("2.0"), &shop("1.0"));
    let m = during(
        &old,
        &new,
        &RolloutTarget {
            traffic: 25,
            new_instances: 25,
            old_instances: 75,
            hosts: None,
        },
    );
    let names: Vec<&str> = m.spec.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["web@1.0", "http@1.0", "web", "http"]);
    // The old version keeps its ids under its new names; the new has its own.
    assert_eq!(m.component_id(component(&m, "web@1.0")), "shop-web");
    assert_eq!(m.component_id(component(&m, "web")), "shop-web-2_0");
    // Instances: 3 of 4 old, 1 of 4 new; the shared provider is placed by the old copy alone.
    let traits = |name: &str| component(&m, name).traits.clone().unwrap();
    let instances = |name: &str| traits(name)[0].properties["instances"].clone();
    assert_eq!(
        (instances("web@1.0"), instances("web")),
        (json!(3), json!(1))
    );
    assert_eq!(instances("http@1.0"), json!(1));
    assert_eq!(m.component_id(component(&m, "http")), "shop-http");
    assert_eq!(traits("http").len(), 1, "only the new version's link");
    // Each version's HTTP link carries its share, and the old one points at its renamed web.
    let old_link = traits("http@1.0")[1].properties.clone();
    let new_link = traits("http")[0].properties.clone();
    assert_eq!(old_link["target"], "web@1.0");
    assert_eq!(
        old_link["source"]["config"][1],
        json!({"name": "shop-weight-1_0", "properties": {"weight": "75"}})
    );
    assert_eq!(
        new_link["source"]["config"][1],
        json!({"name": "shop-weight-2_0", "properties": {"weight": "25"}})
    );
    assert!(
        m.spec.policies.is_empty(),
        "the rollout policy is the controller's"
    );
}

#[test]
fn a_version_at_no_share_runs_no_instances_and_a_host_split_places_each() {
    let old = shop("1.0");
    let new = versioned(&shop("2.0"), &shop("1.0"));
    let m = during(&old, &new, &RolloutTarget::start());
    assert!(
        component(&m, "web").traits.as_ref().unwrap().is_empty(),
        "no scaler for the new web"
    );
    let m = during(
        &old,
        &new,
        &RolloutTarget {
            traffic: 50,
            new_instances: 50,
            old_instances: 50,
            hosts: Some(HostSplit {
                label: "region".into(),
                new_values: vec!["eu".into()],
                old_values: vec!["us".into(), "ap".into()],
            }),
        },
    );
    let spread =
        |name: &str| component(&m, name).traits.as_ref().unwrap()[0].properties["spread"].clone();
    assert_eq!(
        spread("web"),
        json!([{"name": "eu", "requirements": {"region": "eu"}}])
    );
    assert_eq!(
        spread("web@1.0")[1],
        json!({"name": "ap", "requirements": {"region": "ap"}})
    );
}

#[test]
fn shares_round_and_never_drop_a_running_version_to_zero() {
    assert_eq!(scaled(3, 10), 1);
    assert_eq!(scaled(3, 50), 2);
    assert_eq!(scaled(4, 25), 1);
    assert_eq!(scaled(10, 100), 10);
    assert_eq!(scaled(5, 0), 0);
    assert_eq!(slug("v1.2-RC"), "v1_2_rc");
}
