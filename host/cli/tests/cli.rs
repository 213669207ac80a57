//! The `trellis` binary as a user runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn trellis() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trellis"))
}

/// `trellis get hosts -o json` against `nats_url` and `lattice`; add login flags to it.
fn get_hosts_json(nats_url: &str, lattice: &str) -> Command {
    let mut command = trellis();
    command.args([
        "get",
        "hosts",
        "-o",
        "json",
        "--nats",
        nats_url,
        "--lattice",
        lattice,
    ]);
    command
}

/// `trellis plugin new NAME [--kind KIND] --dir DIR`.
fn plugin_new(dir: &Path, name: &str, kind: Option<&str>) -> Command {
    let mut command = trellis();
    command.args(["plugin", "new", name]);
    if let Some(kind) = kind {
        command.args(["--kind", kind]);
    }
    // Nothing is published from here: the tests build against this checkout's SDK.
    command
        .arg("--dir")
        .arg(dir)
        .arg("--sdk-path")
        .arg(repo_root().join("sdk"));
    command
}

/// Where scaffolded plugins build, shared between tests so their dependencies build once.
fn plugin_target() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffolded-plugin")
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
    let mut put = trellis();
    put.args(["app", "put"]).arg(&path);
    let out = run_now(put);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("broken.yaml"), "{}", out.stderr);
    assert!(out.stderr.contains("line 4"), "{}", out.stderr);
}

#[test]
fn help_teaches_the_first_steps() {
    let mut help = trellis();
    help.arg("--help");
    let out = run_now(help);
    let stdout = out.ok();
    assert!(stdout.contains("trellis up --example echo"), "{stdout}");
    assert!(
        stdout.contains("Exit codes") && stdout.contains("3  not found"),
        "{stdout}"
    );
}

#[test]
fn no_controller_is_a_clear_error() {
    // A port nobody listens on: the error says what to start.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut list = trellis();
    list.args(["app", "list", "--nats", &format!("nats://127.0.0.1:{port}")]);
    let out = run_now(list);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("cannot connect to NATS"),
        "{}",
        out.stderr
    );
}

/// `trellis plugin new` as the plugin guide says: the crate's own tests pass, it builds to
/// wasm32-wasip2, and the runtime loads the result as a scaler for its trait type.
#[test]
fn a_new_plugin_tests_natively_builds_to_wasm_and_loads() {
    let (dir, set) = scaffold_test_build_load("scaler", "myscaler", 3);
    assert_eq!(set.scaler_for("myscaler").unwrap().info.name, "myscaler");

    let again = run_now(plugin_new(dir.path(), "myscaler", None));
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("already exists"));
}

/// `trellis plugin new --kind placement|validator`: like the scaler's, each new crate passes its
/// own tests, builds to wasm32-wasip2, and the runtime loads it as its kind.
#[test]
fn a_new_placement_plugin_tests_builds_and_loads() {
    let (_dir, set) = scaffold_test_build_load("placement", "no-maintenance", 2);
    let summaries = set.summaries();
    assert_eq!(summaries[0].kind, trellis_runtime::PluginKind::Placement);
}

#[test]
fn a_new_validator_plugin_tests_builds_and_loads() {
    let (_dir, set) = scaffold_test_build_load("validator", "house-rules", 2);
    let summaries = set.summaries();
    assert_eq!(summaries[0].kind, trellis_runtime::PluginKind::Validator);
}

/// Scaffolds plugin `name` of `kind` as the plugin guide says, runs its own tests (expecting
/// `tests` passed), builds it to wasm32-wasip2 and loads it: returns the folder it was made
/// in and the runtime's plugin set, which holds exactly that plugin, without problems.
fn scaffold_test_build_load(
    kind: &str,
    name: &str,
    tests: usize,
) -> (
    tempfile::TempDir,
    std::sync::Arc<trellis_runtime::PluginSet>,
) {
    let dir = tempfile::tempdir().unwrap();
    run_now(plugin_new(dir.path(), name, Some(kind))).ok();
    let root = dir.path().join(name);
    let target = plugin_target();
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
    assert!(tested.contains(&format!("{tests} passed")), "{tested}");
    cargo(&["build", "--quiet", "--target", "wasm32-wasip2", "--release"]);

    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let file = format!("{}.wasm", name.replace('-', "_"));
    std::fs::copy(
        target.join("wasm32-wasip2/release").join(&file),
        plugins.join(&file),
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
    let summaries = set.summaries();
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    assert_eq!(summaries[0].name, name);
    (dir, set)
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
    let hosts = run(get_hosts_json(&nats.url(), "cli")).await.json();
    assert_eq!(hosts[0]["id"], node.host_id());
    assert_eq!(hosts[0]["labels"]["region"], "east");

    // Asked by its whole id or by a prefix, the host's inventory comes back alike.
    for id in [node.host_id(), &node.host_id()[..6]] {
        let mut command = trellis();
        command.args(["get", "inventory", id, "-o", "json", "--nats", &nats.url()]);
        command.args(["--lattice", "cli"]);
        let inventory = run(command).await.json();
        assert_eq!(inventory["host_id"], node.host_id(), "asked for {id}");
    }

    // Output into a pipe already closed (`| head -c 0`) ends the command quietly.
    let mut closed = get_hosts_json(&nats.url(), "cli");
    closed
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = closed.spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    node.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Commands against a real nats-server, controller and node.

/// The repository root (the built plugins live under build/plugins).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// nats-server and a controller with the named built plugins, for one test.
struct TestLattice {
    dir: tempfile::TempDir,
    nats: trellis_cli::nats_server::NatsServer,
    controller: Option<trellis_controller::Controller>,
    nodes: Vec<trellis_node::Node>,
}

impl TestLattice {
    const NAME: &'static str = "cli";

    async fn start(plugins: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let nats =
            trellis_cli::nats_server::NatsServer::start(0, &dir.path().join("nats")).unwrap();
        let plugin_dir = dir.path().join("plugins");
        std::fs::create_dir_all(&plugin_dir).unwrap();
        for name in plugins {
            let built = repo_root().join(format!("build/plugins/{name}.wasm"));
            assert!(
                built.exists(),
                "{} is missing: run scripts/build-wasm.sh first",
                built.display()
            );
            std::fs::copy(&built, plugin_dir.join(format!("{name}.wasm"))).unwrap();
        }
        let controller =
            trellis_controller::Controller::start(trellis_controller::ControllerConfig {
                nats_url: nats.url(),
                lattices: vec![Self::NAME.into()],
                plugin_dir,
                ..Default::default()
            })
            .await
            .unwrap();
        Self {
            dir,
            nats,
            controller: Some(controller),
            nodes: Vec::new(),
        }
    }

    async fn add_node(&mut self, labels: &[(&str, &str)]) -> String {
        let node = trellis_node::Node::start(trellis_node::NodeConfig {
            nats_url: self.nats.url(),
            lattice: Self::NAME.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            allowed_image_dirs: vec![repo_root().join("build"), self.dir.path().to_path_buf()],
            ..Default::default()
        })
        .await
        .unwrap();
        let id = node.host_id().to_string();
        self.nodes.push(node);
        id
    }

    /// Runs `trellis ARGS --nats URL --lattice cli` off the async workers.
    async fn trellis(&self, args: &[&str]) -> Run {
        let mut command = trellis();
        command
            .args(args)
            .args(["--nats", &self.nats.url(), "--lattice", Self::NAME]);
        run(command).await
    }

    async fn stop(mut self) {
        for node in self.nodes.drain(..) {
            node.stop().await.unwrap();
        }
        if let Some(c) = self.controller.take() {
            c.stop().await;
        }
    }
}

/// What a finished `trellis` run printed, and its exit code.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "stderr: {}\nstdout: {}",
            self.stderr, self.stdout
        );
        &self.stdout
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    fn fails_with(&self, code: i32, said: &str) {
        assert_eq!(
            self.code, code,
            "stderr: {}\nstdout: {}",
            self.stderr, self.stdout
        );
        assert!(
            self.stderr.contains(said),
            "expected `{said}` in: {}",
            self.stderr
        );
    }
}

/// Runs `command` to its end, off the async workers.
async fn run(command: Command) -> Run {
    tokio::task::spawn_blocking(move || run_now(command))
        .await
        .unwrap()
}

/// Runs `command` to its end.
fn run_now(mut command: Command) -> Run {
    let out = command.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// A manifest of app `name` at `version`: one component `web` of `image`, `instances` of it
/// spread.
fn manifest_yaml(name: &str, version: &str, image: &str, instances: u32) -> String {
    format!(
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: {name}\n  annotations:\n    version: {version}\nspec:\n  components:\n    - name: web\n      type: component\n      properties:\n        image: {image}\n      traits:\n        - type: spreadscaler\n          properties:\n            instances: {instances}\n"
    )
}

/// A manifest of one component, written to `dir/{name}-{version}.yaml`.
fn write_manifest(dir: &Path, name: &str, version: &str) -> String {
    let path = dir.join(format!("{name}-{version}.yaml"));
    let yaml = manifest_yaml(name, version, "file:///nowhere/web.wasm", 1);
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

/// get, versions, history and delete read and change the store; a missing app is exit code 3,
/// a version put twice 4, a usage error 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_get_versions_history_delete() {
    let lattice = TestLattice::start(&["spreadscaler"]).await;
    let dir = lattice.dir.path();
    let v1 = write_manifest(dir, "shop", "v1");
    let v2 = write_manifest(dir, "shop", "v2");
    lattice.trellis(&["app", "put", &v1]).await.ok();
    lattice.trellis(&["app", "put", &v2]).await.ok();
    lattice
        .trellis(&["app", "put", &v2])
        .await
        .fails_with(4, "already has a version");

    let versions = lattice
        .trellis(&["app", "versions", "shop", "-o", "json"])
        .await
        .json();
    assert_eq!(versions[0]["version"], "v1");
    assert_eq!(versions[1]["version"], "v2");
    assert_eq!(versions[1]["deployed"], false);

    let yaml = lattice
        .trellis(&["app", "get", "shop", "--version", "v1"])
        .await;
    assert!(yaml.ok().contains("version: v1"), "{}", yaml.stdout);
    assert!(yaml.stdout.contains("kind: Application"), "{}", yaml.stdout);
    let latest = lattice
        .trellis(&["app", "get", "shop", "-o", "json"])
        .await
        .json();
    assert_eq!(latest["metadata"]["annotations"]["version"], "v2");
    lattice
        .trellis(&["app", "get", "nothing"])
        .await
        .fails_with(3, "trellis app list");
    lattice
        .trellis(&["app", "get", "shop", "--version", "v9"])
        .await
        .fails_with(3, "trellis app versions shop");

    lattice
        .trellis(&["app", "deploy", "shop", "--version", "v1", "--no-wait"])
        .await
        .ok();
    lattice.trellis(&["app", "undeploy", "shop"]).await.ok();
    let history = lattice
        .trellis(&["app", "history", "shop", "-o", "json"])
        .await
        .json();
    assert_eq!(history[0]["version"], "v1", "{history}");
    assert_eq!(history[1]["version"], serde_json::Value::Null, "{history}");
    let table = lattice.trellis(&["app", "history", "shop"]).await;
    assert!(table.ok().contains("deployed v1") && table.stdout.contains("undeployed"));

    lattice
        .trellis(&["app", "delete", "shop", "--version", "v1"])
        .await
        .ok();
    let versions = lattice
        .trellis(&["app", "versions", "shop", "-o", "json"])
        .await
        .json();
    assert_eq!(versions.as_array().unwrap().len(), 1, "{versions}");
    lattice.trellis(&["app", "delete", "shop"]).await.ok();
    lattice
        .trellis(&["app", "delete", "shop"])
        .await
        .fails_with(3, "does not exist");
    lattice
        .trellis(&["app", "versions", "shop"])
        .await
        .fails_with(3, "not found");

    let usage = run({
        let mut c = trellis();
        c.args(["app", "get"]);
        c
    })
    .await;
    assert_eq!(usage.code, 2, "{}", usage.stderr);
    lattice.stop().await;
}

/// `get links` and `get config` read what the control interface holds, as a wasmCloud client
/// wrote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_links_and_config_show_the_lattice_state() {
    let mut lattice = TestLattice::start(&[]).await;
    lattice.add_node(&[]).await;
    let client = async_nats::connect(lattice.nats.url()).await.unwrap();
    let ctl = trellis_lattice::ctl::Subjects::new(TestLattice::NAME);
    let ask = |subject: String, body: serde_json::Value| {
        let client = client.clone();
        async move {
            let reply = client
                .request(subject, serde_json::to_vec(&body).unwrap().into())
                .await
                .unwrap();
            let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
            assert_eq!(reply["success"], true, "{reply}");
        }
    };
    ask(
        ctl.config_put("web-http"),
        serde_json::json!({"address": "127.0.0.1:8080"}),
    )
    .await;
    ask(
        ctl.link_put(),
        serde_json::json!({
            "source_id": "shop-httpserver", "target": "shop-web", "name": "default",
            "wit_namespace": "wasi", "wit_package": "http", "interfaces": ["incoming-handler"],
            "source_config": ["web-http"], "target_config": []
        }),
    )
    .await;

    let links = lattice
        .trellis(&["get", "links", "-o", "json"])
        .await
        .json();
    assert_eq!(links[0]["source_id"], "shop-httpserver", "{links}");
    assert_eq!(links[0]["interfaces"][0], "incoming-handler");
    let table = lattice.trellis(&["get", "links"]).await;
    assert!(
        table.ok().contains("wasi:http/incoming-handler")
            && table.stdout.contains("source=web-http"),
        "{}",
        table.stdout
    );

    let config = lattice
        .trellis(&["get", "config", "web-http", "-o", "json"])
        .await
        .json();
    assert_eq!(config["address"], "127.0.0.1:8080");
    let names = lattice
        .trellis(&["get", "config", "-o", "json"])
        .await
        .json();
    assert_eq!(names, serde_json::json!(["web-http"]));
    lattice
        .trellis(&["get", "config", "nothing"])
        .await
        .fails_with(3, "no config named `nothing`");
    lattice.stop().await;
}

/// A nats-server that wants a user and password: the flags, the environment and the config
/// file all reach it; a wrong password is an error that names the credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_from_flags_environment_or_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let nats = trellis_cli::nats_server::NatsServer::start_with_user(
        0,
        &dir.path().join("nats"),
        "trellis",
        "s3cret",
    )
    .unwrap();
    let settings = trellis_cli::connect::NatsSettings {
        user: Some("trellis".into()),
        password: Some("s3cret".into()),
        ..trellis_cli::connect::NatsSettings::new(&nats.url(), "auth")
    };
    let node = start_node(&settings).await;
    let get_hosts = |extra: &[&str]| {
        let mut c = get_hosts_json(&nats.url(), "auth");
        c.args(extra);
        c
    };

    let hosts = run(get_hosts(&["--user", "trellis", "--password", "s3cret"]))
        .await
        .json();
    assert_eq!(hosts[0]["id"], node.host_id());

    let mut from_env = get_hosts(&[]);
    from_env
        .env("TRELLIS_USER", "trellis")
        .env("TRELLIS_PASSWORD", "s3cret");
    assert_eq!(run(from_env).await.json()[0]["id"], node.host_id());

    let config = dir.path().join("trellis.toml");
    std::fs::write(
        &config,
        format!(
            "[nats]\nurl = \"{}\"\nlattice = \"auth\"\nuser = \"trellis\"\npassword = \"s3cret\"\n",
            nats.url()
        ),
    )
    .unwrap();
    let mut from_file = trellis();
    from_file
        .args(["get", "hosts", "-o", "json", "--config"])
        .arg(&config);
    assert_eq!(run(from_file).await.json()[0]["id"], node.host_id());

    for (login, said) in [
        (
            &["--user", "trellis", "--password", "wrong"][..],
            "refused our credentials",
        ),
        (&[], "refused our credentials"),
        (&["--user", "trellis"], "--user needs --password"),
    ] {
        run(get_hosts(login)).await.fails_with(1, said);
    }
    node.stop().await.unwrap();
}

/// `trellis up --nodes 2` with per-node labels: both nodes join with node=1,2 and their
/// regions, `up` says where everything is, its nats-server asks for the user and password it
/// was given, and SIGINT stops it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_starts_labelled_nodes_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let port = trellis_cli::nats_server::free_port().unwrap();
    let mut up = trellis();
    up.args([
        "up",
        "--nats-port",
        &port.to_string(),
        "--lattice",
        "local",
        "--nodes",
        "2",
    ])
    .args([
        "--node-labels",
        "region=east",
        "--node-labels",
        "region=west,zone=b",
    ])
    .arg("--data-dir")
    .arg(dir.path())
    .arg("--plugins")
    .arg(repo_root().join("build/plugins"))
    .env_remove("TRELLIS_NATS")
    .env("TRELLIS_USER", "local")
    .env("TRELLIS_PASSWORD", "pw");
    let stderr_file = dir.path().join("stderr.txt");
    up.stderr(std::fs::File::create(&stderr_file).unwrap());
    let (child, lines, printed) = start_up(&mut up);
    let url = format!("nats://127.0.0.1:{port}");
    assert!(printed.contains(&url), "{printed}");
    // The log goes to a file whose path `up` prints, not between its status lines.
    let log = dir.path().join("up.log");
    assert!(
        printed.contains(&format!("log         {}", log.display())),
        "{printed}"
    );
    assert!(printed.contains("lattice     local"), "{printed}");
    assert!(printed.contains("node=2,region=west,zone=b"), "{printed}");
    assert!(printed.contains("user local"), "{printed}");

    let get = |login: &[&str]| {
        let mut get = get_hosts_json(&url, "local");
        get.args(login);
        get
    };
    run(get(&[])).await.fails_with(1, "refused our credentials");
    let hosts = run(get(&["--user", "local", "--password", "pw"]))
        .await
        .json();
    let mut regions: Vec<(String, String)> = hosts
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["labels"]["node"].as_str().unwrap_or_default().to_string(),
                h["labels"]["region"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    regions.sort();
    assert_eq!(
        regions,
        [("1".into(), "east".into()), ("2".into(), "west".into())],
        "{hosts}"
    );

    stop_up(child, lines, "-INT", port);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("controller serving lattice"), "{log}");
    let stderr = std::fs::read_to_string(&stderr_file).unwrap();
    assert!(
        !stderr.contains("INFO"),
        "the log stays out of the terminal: {stderr}"
    );
}

/// Starts `up` (a `trellis up` command) with its output read line by line, and waits until it
/// says it is ready; returns the process, the lines to come, and what it printed so far.
fn start_up(
    up: &mut Command,
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
    String,
) {
    use std::io::BufRead;
    let mut child = up.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = lines_tx.send(line.unwrap_or_default());
        }
    });
    let mut printed = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !printed.contains("press Ctrl-C") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => printed.push_str(&(line + "\n")),
            Err(_) => {
                let _ = child.kill();
                panic!("`up` did not get ready within 30s; it printed:\n{printed}");
            }
        }
    }
    (child, lines, printed)
}

/// Sends `signal` to a running `trellis up` and checks that it stops cleanly: it exits 0,
/// says `stopped`, and its nats-server is gone (nothing listens on `nats_port` any more).
fn stop_up(
    mut child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    signal: &str,
    nats_port: u16,
) {
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("`up` did not stop within 15s of {signal}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{signal}: {status}");
    // The reader thread ends (and the channel closes) at the end of `up`'s output.
    let mut rest = Vec::new();
    while let Ok(line) = lines.recv_timeout(std::time::Duration::from_secs(5)) {
        rest.push(line);
    }
    assert!(rest.iter().any(|l| l == "stopped"), "{signal}: {rest:?}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", nats_port)).is_err(),
        "{signal}: the nats-server `up` started still listens on {nats_port}"
    );
}

/// `trellis up` stopped with SIGTERM (as systemd, docker and CI runners stop processes) ends
/// what it started, nats-server included, as Ctrl-C does; so does SIGHUP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_stops_what_it_started_on_sigterm_and_sighup() {
    for signal in ["-TERM", "-HUP"] {
        let dir = tempfile::tempdir().unwrap();
        let port = trellis_cli::nats_server::free_port().unwrap();
        let mut up = trellis();
        up.args([
            "up",
            "--nats-port",
            &port.to_string(),
            "--lattice",
            "term",
            "--no-http",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--plugins")
        .arg(repo_root().join("build/plugins"))
        .env_remove("TRELLIS_NATS")
        .stderr(std::process::Stdio::null());
        let (child, lines, _printed) = start_up(&mut up);
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "nats-server listens while `up` runs"
        );
        stop_up(child, lines, signal, port);
    }
}

/// `plugin test` and `plugin build` run cargo on a scaffolded plugin and say where the
/// component is; without cargo the error says how to install it.
#[test]
fn plugin_test_and_build_run_cargo_and_name_the_wasm() {
    let dir = tempfile::tempdir().unwrap();
    run_now(plugin_new(dir.path(), "buildme", None)).ok();
    let root = dir.path().join("buildme");
    // Shared with the scaffolding test, so the plugin's dependencies build once.
    let target = plugin_target();
    let plugin = |args: &[&str], folder: &Path| {
        let mut command = trellis();
        command.arg("plugin").args(args).arg(folder);
        command
    };

    let mut test = plugin(&["test"], &root);
    test.env("CARGO_TARGET_DIR", &target);
    assert!(run_now(test).ok().contains("test result: ok"));

    let mut build = plugin(&["build", "-o", "json"], &root);
    build.env("CARGO_TARGET_DIR", &target);
    let built = run_now(build).json();
    let wasm = PathBuf::from(built["wasm"].as_str().unwrap());
    assert_eq!(wasm, target.join("wasm32-wasip2/release/buildme.wasm"));
    assert!(wasm.is_file());

    let mut no_cargo = plugin(&["build"], &root);
    no_cargo.env("PATH", dir.path()).env_remove("CARGO");
    let no_cargo = run_now(no_cargo);
    no_cargo.fails_with(1, "cargo is not installed");
    assert!(no_cargo.stderr.contains("rustup"), "{}", no_cargo.stderr);

    let not_a_crate = run_now(plugin(&["build"], dir.path()));
    assert!(not_a_crate.stderr.contains("no Cargo.toml"));
}

/// A manifest running the echo example component (`instances` of it), for tests that need a
/// component that really starts.
fn write_echo_manifest(dir: &Path, version: &str, instances: u32) -> String {
    let wasm = repo_root().join("build/examples/echo.wasm");
    assert!(
        wasm.exists(),
        "{} is missing: run scripts/build-wasm.sh first",
        wasm.display()
    );
    let wasm = std::fs::canonicalize(wasm).unwrap();
    let path = dir.join(format!("echo-{version}.yaml"));
    let image = format!("file://{}", wasm.display());
    std::fs::write(&path, manifest_yaml("shop", version, &image, instances)).unwrap();
    path.display().to_string()
}

/// `app plan` shows what a deploy would do without doing it; `app rollback` goes back to the
/// version deployed before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_a_deploy_before_it_happens_and_rollback_goes_back() {
    let mut lattice = TestLattice::start(&["spreadscaler"]).await;
    let host = lattice.add_node(&[]).await;
    let dir = lattice.dir.path().to_path_buf();
    lattice
        .trellis(&["app", "put", &write_echo_manifest(&dir, "v1", 1)])
        .await
        .ok();
    lattice
        .trellis(&["app", "put", &write_echo_manifest(&dir, "v2", 2)])
        .await
        .ok();

    let plan = lattice
        .trellis(&["app", "plan", "shop", "--version", "v1", "-o", "json"])
        .await
        .json();
    assert_eq!(plan["version"], "v1");
    let commands = plan["commands"].as_array().unwrap();
    assert_eq!(commands.len(), 1, "{plan}");
    assert!(commands[0]["subject"].as_str().unwrap().ends_with(&host));
    assert_eq!(commands[0]["body"]["count"], 1);
    let hosts = lattice
        .trellis(&["get", "inventory", &host, "-o", "json"])
        .await
        .json();
    assert_eq!(
        hosts["components"],
        serde_json::json!([]),
        "plan sent nothing"
    );

    let deploy = ["app", "deploy", "shop", "--timeout", "30", "--version"];
    lattice.trellis(&[&deploy[..], &["v1"]].concat()).await.ok();
    let plan = lattice.trellis(&["app", "plan", "shop"]).await;
    assert!(
        plan.ok()
            .contains(&format!("+ scale component shop-web to 2 on {host}")),
        "{}",
        plan.stdout
    );
    lattice.trellis(&[&deploy[..], &["v2"]].concat()).await.ok();
    let plan = lattice
        .trellis(&["app", "plan", "shop", "--version", "v2"])
        .await;
    assert!(plan.ok().contains("no changes"), "{}", plan.stdout);

    let back = lattice
        .trellis(&["app", "rollback", "shop", "--timeout", "30"])
        .await;
    assert!(back.ok().contains("v1"), "{}", back.stdout);
    let versions = lattice
        .trellis(&["app", "versions", "shop", "-o", "json"])
        .await
        .json();
    assert_eq!(versions[0]["deployed"], true, "{versions}");

    lattice
        .trellis(&["app", "plan", "shop", "--version", "v9"])
        .await
        .fails_with(3, "no version v9");
    lattice
        .trellis(&["app", "put", &write_manifest(&dir, "fresh", "v1")])
        .await
        .ok();
    lattice
        .trellis(&["app", "rollback", "fresh"])
        .await
        .fails_with(3, "no earlier deployed version");
    lattice.stop().await;
}

/// A node of the lattice `settings` names, logged in (credentials, TLS) as `settings` say.
async fn start_node(settings: &trellis_cli::connect::NatsSettings) -> trellis_node::Node {
    trellis_node::Node::start_with_options(
        trellis_node::NodeConfig {
            nats_url: settings.url.clone(),
            lattice: settings.lattice.clone(),
            ..Default::default()
        },
        settings.options().await.unwrap(),
    )
    .await
    .unwrap()
}

/// Makes a CA, a server certificate for 127.0.0.1 and a client certificate with `openssl`, in
/// `dir`. Returns the paths (ca, server cert, server key, client cert, client key).
fn make_certificates(dir: &Path) -> [PathBuf; 5] {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs (install it: sudo apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509", "-days", "1", "-subj", "/CN=trellis test CA"][..],
            &ec,
            &["-keyout", "ca-key.pem", "-out", "ca.pem"],
        ]
        .concat(),
    );
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        let (key, csr, cert, extfile) = (
            format!("{name}-key.pem"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        openssl(
            &[
                &["req", "-subj", &format!("/CN={name}")][..],
                &ec,
                &["-keyout", &key, "-out", &csr],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-out",
            &cert,
            "-extfile",
            &extfile,
        ]);
    }
    [
        "ca.pem",
        "server.pem",
        "server-key.pem",
        "client.pem",
        "client-key.pem",
    ]
    .map(|f| dir.join(f))
}

/// A nats-server that requires mutual TLS: the CLI and a node connect with --tls-ca,
/// --tls-cert and --tls-key; without them the error names the TLS options.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_ca_and_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, server_cert, server_key, client_cert, client_key] = make_certificates(dir.path());
    let path = |p: &PathBuf| p.display().to_string();
    let nats = trellis_cli::nats_server::NatsServer::start_with_args(
        0,
        &dir.path().join("nats"),
        vec![
            "--tlsverify".into(),
            "--tlscert".into(),
            path(&server_cert),
            "--tlskey".into(),
            path(&server_key),
            "--tlscacert".into(),
            path(&ca),
        ],
    )
    .unwrap();
    let settings = trellis_cli::connect::NatsSettings {
        tls_ca: Some(ca.clone()),
        tls_cert: Some(client_cert.clone()),
        tls_key: Some(client_key.clone()),
        ..trellis_cli::connect::NatsSettings::new(&nats.url(), "tls")
    };
    let node = start_node(&settings).await;
    let get_hosts = |extra: &[String]| {
        let mut c = get_hosts_json(&nats.url(), "tls");
        c.args(extra);
        c
    };
    let hosts = run(get_hosts(&[
        "--tls-ca".into(),
        path(&ca),
        "--tls-cert".into(),
        path(&client_cert),
        "--tls-key".into(),
        path(&client_key),
    ]))
    .await
    .json();
    assert_eq!(hosts[0]["id"], node.host_id());

    for (login, said) in [
        (vec![], "--tls-ca"),
        (vec!["--tls-ca".into(), path(&ca)], "--tls-cert"),
    ] {
        run(get_hosts(&login)).await.fails_with(1, said);
    }
    node.stop().await.unwrap();
}

/// Without the wasm32-wasip2 target, `plugin build` stops before building and says the rustup
/// command that installs it.
#[test]
fn plugin_build_without_the_wasm_target_says_how_to_add_it() {
    let dir = tempfile::tempdir().unwrap();
    run_now(plugin_new(dir.path(), "notarget", None)).ok();
    // A rustup that knows only the native target, first on PATH.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let rustup = bin.join("rustup");
    std::fs::write(&rustup, "#!/bin/sh\necho x86_64-unknown-linux-gnu\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rustup, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut build = trellis();
    build
        .args(["plugin", "build"])
        .arg(dir.path().join("notarget"))
        .env("PATH", path);
    run_now(build).fails_with(1, "rustup target add wasm32-wasip2");
}

/// `trellis app validate FILE`: each finding with its place and hint, like a compiler; exit 1
/// when `put` would refuse the file, 0 (and "valid") when not; `-o json` for scripts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_validate_prints_findings_like_a_compiler() {
    let lattice = TestLattice::start(&["spreadscaler", "linkscaler", "validator"]).await;
    let good = write_manifest(lattice.dir.path(), "shop", "v1");
    let run = lattice.trellis(&["app", "validate", &good]).await;
    assert!(
        run.ok().contains("0 errors, 0 warnings — valid"),
        "{}",
        run.stdout
    );

    let bad = lattice.dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace("instances: 1", "instances: lots")
            + "        - type: autoscaler\n",
    )
    .unwrap();
    let bad = bad.display().to_string();
    let run = lattice.trellis(&["app", "validate", &bad]).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("`put` would refuse it"),
        "{}",
        run.stderr
    );
    for expected in [
        "error: unknown trait type `autoscaler`",
        &format!("  --> {bad}: spec.components[0].traits[1].type"),
        &format!("  --> {bad}: spec.components[0].traits[0].properties.instances"),
        "  = from: spreadscaler",
        "2 errors, 0 warnings",
    ] {
        assert!(
            run.stdout.contains(expected),
            "no `{expected}` in:\n{}",
            run.stdout
        );
    }

    let run = lattice
        .trellis(&["app", "validate", &bad, "-o", "json"])
        .await;
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["diagnostics"].as_array().unwrap().len(), 2);
    lattice.stop().await;
}
