use serde_json::json;
use trellis_sdk::Severity;

use super::*;

fn echo() -> Value {
    json!({
        "apiVersion": "core.oam.dev/v1beta1",
        "kind": "Application",
        "metadata": {"name": "echo", "annotations": {"version": "v1"}},
        "spec": {"components": [
            {"name": "echo", "type": "component",
             "properties": {"image": "file://echo.wasm"},
             "traits": [{"type": "spreadscaler", "properties": {"instances": 1}}]},
            {"name": "httpserver", "type": "capability",
             "properties": {"image": "builtin:http-server"},
             "traits": [
                {"type": "spreadscaler", "properties": {"instances": 1}},
                {"type": "link", "properties": {"namespace": "wasi", "package": "http",
                  "interfaces": ["incoming-handler"], "target": "echo"}}]}
        ]}
    })
}

fn errors(manifest: &Value) -> Vec<(String, String)> {
    ManifestValidator::validate(manifest)
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| (d.path, d.message))
        .collect()
}

#[test]
fn a_good_manifest_has_no_findings() {
    assert_eq!(ManifestValidator::validate(&echo()), []);
}

#[test]
fn name_pattern_and_latest_version() {
    let mut m = echo();
    m["metadata"]["name"] = json!("my app!");
    m["metadata"]["annotations"]["version"] = json!("latest");
    let found = ManifestValidator::validate(&m);
    assert_eq!(found[0].path, "metadata.name");
    assert!(found[0].hint.contains("my-app-"), "{found:?}");
    assert_eq!(found[1].path, "metadata.annotations.version");
}

#[test]
fn duplicate_component_names_and_ids() {
    let mut m = echo();
    m["spec"]["components"][1]["name"] = json!("echo");
    m["spec"]["components"][0]["properties"]["id"] = json!("shared-id");
    m["spec"]["components"][1]["properties"]["id"] = json!("shared-id");
    let found = errors(&m);
    assert!(
        found.contains(&(
            "spec.components[1].name".into(),
            "component name 'echo' is already used by spec.components[0]".into()
        )),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(p, m)| p == "spec.components[1].properties.id" && m.contains("shared-id")),
        "{found:?}"
    );
}

#[test]
fn link_target_must_exist_with_a_hint() {
    let mut m = echo();
    m["spec"]["components"][1]["traits"][1]["properties"]["target"] = json!("ecoh");
    let found = ManifestValidator::validate(&m);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0].path,
        "spec.components[1].traits[1].properties.target"
    );
    assert_eq!(found[0].hint, "did you mean 'echo'?");
    m["spec"]["components"][1]["traits"][1]["properties"]["target"] = json!({"name": "zzz"});
    let found = ManifestValidator::validate(&m);
    assert_eq!(
        found[0].path,
        "spec.components[1].traits[1].properties.target.name"
    );
    assert!(found[0].hint.contains("echo, httpserver"), "{found:?}");
}

#[test]
fn duplicate_links() {
    let mut m = echo();
    let link = m["spec"]["components"][1]["traits"][1].clone();
    m["spec"]["components"][1]["traits"]
        .as_array_mut()
        .unwrap()
        .push(link);
    let found = errors(&m);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "spec.components[1].traits[2]");
    assert!(
        found[0].1.contains("wasi:http named 'default'"),
        "{found:?}"
    );
    // A different link name is a different slot.
    m["spec"]["components"][1]["traits"][2]["properties"]["name"] = json!("admin");
    assert_eq!(errors(&m), []);
}

#[test]
fn image_xor_shared_application() {
    let mut m = echo();
    m["spec"]["components"][0]["properties"]["application"] =
        json!({"name": "shared", "component": "echo"});
    assert_eq!(errors(&m)[0].0, "spec.components[0].properties");
    m["spec"]["components"][0]["properties"] = json!({});
    assert_eq!(errors(&m)[0].0, "spec.components[0].properties.image");
}

#[test]
fn a_component_nothing_runs_is_a_warning() {
    let mut m = echo();
    m["spec"]["components"][0]["traits"] = json!([]);
    let found = ManifestValidator::validate(&m);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].severity, Severity::Warning);
    assert_eq!(found[0].path, "spec.components[0]");
}
