//! The `trellis` binary as a user runs it.

use std::process::Command;

fn trellis() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trellis"))
}

#[test]
fn malformed_manifest_error_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(
        &path,
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: [oops\n",
    )
    .unwrap();
    let out = trellis().args(["app", "put"]).arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.yaml"), "{stderr}");
    assert!(stderr.contains("line 4"), "{stderr}");
}

#[test]
fn help_teaches_the_first_steps() {
    let out = trellis().arg("--help").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("trellis up --example echo"), "{stdout}");
}

#[test]
fn no_controller_is_a_clear_error() {
    // A port nobody listens on: the error says what to start.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = trellis()
        .args(["app", "list", "--nats", &format!("nats://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect to NATS"), "{stderr}");
}

/// `trellis plugin new` as the plugin guide says: the crate's own tests pass, it builds to
/// wasm32-wasip2, and the runtime loads the result as a scaler for its trait type.
#[test]
fn a_new_plugin_tests_natively_builds_to_wasm_and_loads() {
    let dir = tempfile::tempdir().unwrap();
    let out = trellis()
        .args(["plugin", "new", "myscaler", "--kind", "scaler", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = dir.path().join("myscaler");

    // Shared between runs so the plugin's dependencies build once.
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffolded-plugin");
    let cargo = |args: &[&str]| {
        let out = Command::new(env!("CARGO"))
            .args(args)
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let tested = cargo(&["test", "--quiet"]);
    assert!(tested.contains("3 passed"), "{tested}");
    cargo(&["build", "--quiet", "--target", "wasm32-wasip2", "--release"]);

    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        target.join("wasm32-wasip2/release/myscaler.wasm"),
        plugins.join("myscaler.wasm"),
    )
    .unwrap();
    let runtime = trellis_runtime::Runtime::new(trellis_runtime::RuntimeConfig {
        plugin_dir: plugins,
        ..Default::default()
    })
    .unwrap();
    runtime.reload();
    let set = runtime.plugins();
    assert!(set.problems.is_empty(), "{:?}", set.problems);
    assert_eq!(set.scaler_for("myscaler").unwrap().info.name, "myscaler");

    let again = trellis()
        .args(["plugin", "new", "myscaler", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

/// `trellis get hosts -o json` lists a running node, with its labels, for scripts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_hosts_lists_a_running_node_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let nats = trellis_cli::nats_server::NatsServer::start(0, &dir.path().join("nats")).unwrap();
    let node = trellis_node::Node::start(trellis_node::NodeConfig {
        nats_url: nats.url(),
        lattice: "cli".into(),
        labels: [("region".to_string(), "east".to_string())].into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let out = trellis()
        .args(["get", "hosts", "-o", "json", "--lattice", "cli", "--nats"])
        .arg(nats.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hosts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hosts[0]["id"], node.host_id());
    assert_eq!(hosts[0]["labels"]["region"], "east");
    node.stop().await.unwrap();
}
