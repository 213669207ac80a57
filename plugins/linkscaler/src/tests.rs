use trellis_sdk::testing::TestLattice;
use trellis_sdk::{label_map, ComponentKind, ComponentSpec};

use super::*;

fn spec(name: &str, kind: ComponentKind) -> ComponentSpec {
    ComponentSpec {
        name: name.into(),
        kind,
        image: format!("file://{name}.wasm"),
        id: format!("shop-{name}"),
        config: vec![],
    }
}

/// A link trait on `httpserver` (a provider) towards the `echo` component.
fn ctx(properties: &str) -> ScalerContext {
    let source = spec("httpserver", ComponentKind::Provider);
    ScalerContext {
        app: "shop".into(),
        version: "v1".into(),
        components: vec![spec("echo", ComponentKind::Component), source.clone()],
        component: source,
        trait_type: "link".into(),
        properties: properties.into(),
        memo: None,
    }
}

const HTTP: &str = r#"{
    "namespace": "wasi", "package": "http", "interfaces": ["incoming-handler"],
    "target": "echo",
    "source": {"config": [{"name": "echo-http", "properties": {"address": "127.0.0.1:8080"}}]}
}"#;

fn http_link() -> Link {
    Link {
        source_id: "shop-httpserver".into(),
        target: "shop-echo".into(),
        name: "default".into(),
        wit_namespace: "wasi".into(),
        wit_package: "http".into(),
        interfaces: vec!["incoming-handler".into()],
        source_config: vec!["echo-http".into()],
        target_config: vec![],
    }
}

fn put_echo_http() -> Command {
    Command::PutConfig {
        name: "echo-http".into(),
        entries: label_map(&[("address", "127.0.0.1:8080")]),
    }
}

#[test]
fn describe_names_the_trait_type() {
    assert_eq!(LinkScaler::describe().trait_types, ["link"]);
}

#[test]
fn puts_configs_first_then_the_link_then_is_deployed() {
    let mut lattice = TestLattice::new();
    let first = LinkScaler::reconcile(&ctx(HTTP), &lattice);
    assert_eq!(first.commands, [put_echo_http()]);
    assert!(matches!(first.status, Status::Reconciling(_)), "{first:?}");
    lattice.apply(&first.commands);

    let second = LinkScaler::reconcile(&ctx(HTTP), &lattice);
    assert_eq!(second.commands, [Command::PutLink(http_link())]);
    lattice.apply(&second.commands);

    assert_eq!(
        LinkScaler::reconcile(&ctx(HTTP), &lattice),
        Reconciled::deployed()
    );
}

#[test]
fn link_and_config_in_place_is_deployed() {
    let lattice = TestLattice::new()
        .with_config("echo-http", &[("address", "127.0.0.1:8080")])
        .with_link(http_link());
    assert_eq!(
        LinkScaler::reconcile(&ctx(HTTP), &lattice),
        Reconciled::deployed()
    );
}

#[test]
fn link_drift_is_repaired() {
    let drifted = Link {
        target: "someone-else".into(),
        interfaces: vec!["outgoing-handler".into()],
        ..http_link()
    };
    let lattice = TestLattice::new()
        .with_config("echo-http", &[("address", "127.0.0.1:8080")])
        .with_link(drifted);
    let result = LinkScaler::reconcile(&ctx(HTTP), &lattice);
    assert_eq!(result.commands, [Command::PutLink(http_link())]);
    let Status::Reconciling(reason) = result.status else {
        panic!("{result:?}");
    };
    assert!(reason.starts_with("repairing link 'default'"), "{reason}");
}

#[test]
fn config_drift_is_repaired_without_touching_the_link() {
    let lattice = TestLattice::new()
        .with_config("echo-http", &[("address", "0.0.0.0:9999")])
        .with_link(http_link());
    let result = LinkScaler::reconcile(&ctx(HTTP), &lattice);
    assert_eq!(result.commands, [put_echo_http()]);
}

#[test]
fn other_links_of_the_source_are_left_alone() {
    let other = Link {
        name: "metrics".into(),
        ..http_link()
    };
    let lattice = TestLattice::new()
        .with_config("echo-http", &[("address", "127.0.0.1:8080")])
        .with_link(http_link())
        .with_link(other);
    assert_eq!(
        LinkScaler::reconcile(&ctx(HTTP), &lattice),
        Reconciled::deployed()
    );
}

#[test]
fn interface_order_is_not_drift() {
    let props = r#"{"namespace": "wasi", "package": "keyvalue",
        "interfaces": ["store", "atomics"], "target": "echo"}"#;
    let link = Link {
        wit_package: "keyvalue".into(),
        interfaces: vec!["atomics".into(), "store".into()],
        source_config: vec![],
        ..http_link()
    };
    let lattice = TestLattice::new().with_link(link);
    assert_eq!(
        LinkScaler::reconcile(&ctx(props), &lattice),
        Reconciled::deployed()
    );
}

#[test]
fn external_config_must_exist() {
    let props = r#"{"namespace": "wasi", "package": "keyvalue", "interfaces": ["store"],
        "target": {"name": "echo", "config": [{"name": "kv-bucket"}]}}"#;
    let lattice = TestLattice::new();
    let result = LinkScaler::reconcile(&ctx(props), &lattice);
    assert!(result.commands.is_empty());
    assert_eq!(
        result.status,
        Status::Waiting("config 'kv-bucket' does not exist".into())
    );

    let lattice = lattice.with_config("kv-bucket", &[("bucket", "b")]);
    let result = LinkScaler::reconcile(&ctx(props), &lattice);
    let [Command::PutLink(link)] = result.commands.as_slice() else {
        panic!("{result:?}");
    };
    assert_eq!(link.target_config, ["kv-bucket"]);
    assert_eq!(link.wit_package, "keyvalue");
}

#[test]
fn deprecated_config_lists_and_link_name() {
    let props = r#"{"namespace": "wasi", "package": "http", "interfaces": ["incoming-handler"],
        "target": "echo", "name": "public",
        "source_config": [{"name": "echo-http", "properties": {"address": "127.0.0.1:8080", "port": 8080}}],
        "target_config": [{"name": "echo-settings", "properties": {"verbose": true}}]}"#;
    let lattice = TestLattice::new();
    let result = LinkScaler::reconcile(&ctx(props), &lattice);
    assert_eq!(
        result.commands,
        [
            Command::PutConfig {
                name: "echo-http".into(),
                entries: label_map(&[("address", "127.0.0.1:8080"), ("port", "8080")]),
            },
            Command::PutConfig {
                name: "echo-settings".into(),
                entries: label_map(&[("verbose", "true")]),
            },
        ]
    );
    let mut lattice = lattice;
    lattice.apply(&result.commands);
    let result = LinkScaler::reconcile(&ctx(props), &lattice);
    assert_eq!(
        result.commands,
        [Command::PutLink(Link {
            name: "public".into(),
            target_config: vec!["echo-settings".into()],
            ..http_link()
        })]
    );
}

#[test]
fn unknown_target_fails_clearly() {
    let props = r#"{"namespace": "wasi", "package": "http", "interfaces": ["incoming-handler"],
        "target": "nope"}"#;
    let result = LinkScaler::reconcile(&ctx(props), &TestLattice::new());
    assert_eq!(
        result,
        Reconciled::failed(
            "link target 'nope' is not a component of app 'shop' (components: echo, httpserver)"
        )
    );
}

#[test]
fn bad_properties_fail_with_the_field_path() {
    let props = r#"{"namespace": "wasi", "package": "http", "interfaces": "incoming-handler",
        "target": "echo"}"#;
    let result = LinkScaler::reconcile(&ctx(props), &TestLattice::new());
    let Status::Failed(reason) = result.status else {
        panic!("{result:?}");
    };
    assert!(reason.contains("`link`"), "{reason}");
    assert!(reason.contains("interfaces"), "{reason}");
}

#[test]
fn cleanup_deletes_the_link_and_the_configs_it_put() {
    let props = r#"{"namespace": "wasi", "package": "http", "interfaces": ["incoming-handler"],
        "target": {"name": "echo", "config": [{"name": "external"}]},
        "source": {"config": [{"name": "echo-http", "properties": {"address": "127.0.0.1:8080"}}]}}"#;
    let commands = LinkScaler::cleanup(&ctx(props), &TestLattice::new());
    assert_eq!(
        commands,
        [
            Command::DeleteLink {
                source_id: "shop-httpserver".into(),
                name: "default".into(),
                wit_namespace: "wasi".into(),
                wit_package: "http".into(),
            },
            Command::DeleteConfig("echo-http".into()),
        ]
    );
}

#[test]
fn check_names_a_missing_target_and_bad_fields() {
    let good = r#"{"namespace": "wasi", "package": "http", "interfaces": ["incoming-handler"],
        "target": "echo"}"#;
    assert!(LinkScaler::check(&ctx(good)).is_empty());
    let missing = r#"{"namespace": "wasi", "package": "http", "interfaces": ["incoming-handler"],
        "target": {"name": "nope"}}"#;
    let found = LinkScaler::check(&ctx(missing));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, "target.name");
    assert!(found[0].hint.contains("echo, httpserver"), "{found:?}");
    let typo = r#"{"namespace": "wasi", "package": "http", "interfaces": ["incoming-handler"],
        "target": "ecoh"}"#;
    assert_eq!(
        LinkScaler::check(&ctx(typo))[0].hint,
        "did you mean 'echo'?"
    );
    let bad = r#"{"namespace": "wasi", "package": "http", "interfaces": "incoming-handler",
        "target": "echo"}"#;
    assert_eq!(LinkScaler::check(&ctx(bad))[0].path, "interfaces");
}
