//! The OpenAPI document and the router are one list: every route is documented and every
//! documented operation is routed.

use std::collections::BTreeSet;

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

#[test]
fn every_route_is_documented_and_every_documented_path_is_routed() {
    let doc: serde_json::Value =
        serde_json::from_str(trellis_http::routes::OPENAPI).expect("openapi.json is JSON");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    let routed: BTreeSet<(String, String)> = trellis_http::routes::endpoints()
        .iter()
        .map(|e| (e.method.to_string(), e.path.to_string()))
        .collect();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().unwrap() {
            assert!(METHODS.contains(&method.as_str()), "{method} {path}");
            assert!(
                operation["responses"].get("200").is_some(),
                "{method} {path} documents no 200 answer"
            );
            documented.insert((method.clone(), path.clone()));
        }
    }
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from src/openapi.json: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:?}"
    );
}

#[test]
fn every_schema_reference_resolves() {
    let doc: serde_json::Value = serde_json::from_str(trellis_http::routes::OPENAPI).unwrap();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {r}"));
        assert!(schemas.contains_key(name), "{r} is not defined");
    }
}

fn collect_refs(value: &serde_json::Value, refs: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", serde_json::Value::String(s)) => refs.push(s.clone()),
                    _ => collect_refs(v, refs),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}
