//! A lattice of real processes for the end-to-end suite: a `nats-server` with JetStream, and
//! `trellis node` / `trellis controller` each started as a child process of the `trellis`
//! binary, exactly as an operator would run them.
//!
//! Each child writes its stdout and stderr to a log file in the test's temporary folder, runs in
//! its own process group, and is killed (the whole group) when the [`ProcessLattice`] is dropped,
//! also when the test panics. A test that fails prints its scenario and the tail of every log, so
//! the suite is quiet when it passes and says what each process saw when it does not.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use trellis_cli::client::ApiClient;
use trellis_cli::nats_server::NatsServer;

use crate::{built_plugin, repo_root};

/// Seconds between node heartbeats: short, so the controller notices a dead node quickly.
pub const HEARTBEAT_SECS: u64 = 1;
/// Seconds without a heartbeat after which the controllers count a node as gone.
pub const HOST_TIMEOUT_SECS: u64 = 3;
/// Milliseconds a plugin call may take in the controllers of this suite (see `add_controller`).
pub const PLUGIN_DEADLINE_MS: u64 = 500;
/// How long a child may take to say it is up.
const START_PATIENCE: Duration = Duration::from_secs(30);
/// Lines of each log shown when a test fails.
const LOG_TAIL: usize = 40;

/// The `trellis` binary of this build. `cargo test -p trellis-tests` does not build binaries of
/// other packages, and a binary left from an older build would test old code, so the first call
/// builds it. It selects the tests crate's test targets too, so that features resolve as in
/// `cargo test -p trellis-tests` and the build is a no-op when current (a plain
/// `cargo build -p trellis-cli` resolves them differently and recompiles the CLI each time,
/// about 35 s here). Set `TRELLIS_BIN` to use a given binary instead (e.g. after a workspace
/// `cargo test`, which builds `target/debug/trellis` itself).
pub fn trellis_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(bin) = std::env::var("TRELLIS_BIN") {
            return Ok(PathBuf::from(bin));
        }
        // The test executable is target/{profile}/deps/e2e_*-HASH; the binary sits in
        // target/{profile}.
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .ok_or("the test executable is not in target/{profile}/deps")?;
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(&cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "trellis-cli",
                "-p",
                "trellis-tests",
            ])
            .args(["--bin", "trellis", "--tests"])
            .current_dir(repo_root())
            .status()
            .map_err(|e| format!("cannot run `{cargo} build`: {e}"))?;
        if !status.success() {
            return Err(format!(
                "building the trellis binary failed ({status}); fix the build or set TRELLIS_BIN"
            ));
        }
        let bin = profile_dir.join("trellis");
        if !bin.exists() {
            return Err(format!("{} is missing after the build", bin.display()));
        }
        Ok(bin)
    })
    .clone()
    .unwrap_or_else(|e| panic!("no trellis binary: {e}"))
}

/// What a child process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Node,
    Controller,
    /// A program from outside trellis (a wasmCloud host, wadm), [`ProcessLattice::add_program`].
    Program,
}

/// One `trellis` child process and its log.
pub struct Proc {
    pub name: String,
    pub role: Role,
    /// The node's host id (nodes only), as it printed it at start.
    pub host_id: Option<String>,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends `signal` (a `kill` name: STOP, CONT) to the process group.
    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args([&format!("-{signal}"), "--", &format!("-{}", child.id())])
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "kill -{signal} {} failed",
                self.name
            );
        }
    }

    /// Kills the process group with SIGKILL: no goodbye, as a crashed machine.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The child leads its own group (see `spawn`); `kill -- -PGID` reaches anything
            // it started too.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A lattice of real processes for one test; everything is killed on drop.
pub struct ProcessLattice {
    /// The test's name, printed with the logs when it fails.
    pub scenario: String,
    pub lattice: String,
    pub nats: NatsServer,
    pub procs: Vec<Proc>,
    plugin_dir: PathBuf,
    // Last, so the folder (and the logs in it) goes after the processes.
    dir: tempfile::TempDir,
}

impl ProcessLattice {
    /// Starts nats-server with JetStream in a fresh temporary folder, and a plugin folder holding
    /// the named built plugins (`build/plugins/{name}.wasm`). No node or controller yet.
    pub fn start(scenario: &str, plugins: &[&str]) -> anyhow::Result<Self> {
        trellis_bin();
        let dir = tempfile::Builder::new().prefix("trellis-e2e-").tempdir()?;
        let nats = NatsServer::start(0, &dir.path().join("nats"))?;
        let plugin_dir = dir.path().join("plugins");
        std::fs::create_dir_all(&plugin_dir)?;
        for name in plugins {
            std::fs::copy(built_plugin(name), plugin_dir.join(format!("{name}.wasm")))?;
        }
        Ok(Self {
            scenario: scenario.to_string(),
            lattice: "e2e".to_string(),
            nats,
            procs: Vec::new(),
            plugin_dir,
            dir,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `text` to file `name` in the test's folder; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes app `web` (the echo component, `instances` of it by spreadscaler) at `version`
    /// to a manifest file in the test's folder; returns its path.
    pub fn write_echo_app(&self, version: &str, instances: u32) -> PathBuf {
        self.write(
            &format!("web-{version}.yaml"),
            &crate::echo_app(version, instances),
        )
    }

    pub fn plugin_dir(&self) -> &Path {
        &self.plugin_dir
    }

    /// Starts a `trellis node` with these labels and a 1 s heartbeat; returns its index in
    /// [`ProcessLattice::procs`] once it has joined the lattice.
    pub async fn add_node(&mut self, labels: &[(&str, &str)]) -> anyhow::Result<usize> {
        self.add_node_with(labels, &[]).await
    }

    /// Like [`ProcessLattice::add_node`], with more arguments (e.g. `--device FILE`).
    pub async fn add_node_with(
        &mut self,
        labels: &[(&str, &str)],
        extra: &[&str],
    ) -> anyhow::Result<usize> {
        let n = self.procs.iter().filter(|p| p.role == Role::Node).count();
        let mut args: Vec<String> = vec![
            "node".into(),
            "--heartbeat".into(),
            HEARTBEAT_SECS.to_string(),
            "--name".into(),
            format!("node-{n}"),
            // The built examples, and the images a test writes into its folder.
            "--allow-images".into(),
            repo_root().join("build").display().to_string(),
            "--allow-images".into(),
            self.dir().display().to_string(),
        ];
        for (k, v) in labels {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let index = self.spawn(&format!("node-{n}"), Role::Node, &args)?;
        let line = self.wait_for_line(index, "joined lattice").await?;
        // "node {host id} joined lattice {name}; …"
        let host_id = line
            .split_whitespace()
            .skip_while(|w| *w != "node")
            .nth(1)
            .with_context(|| format!("no host id in {line:?}"))?
            .to_string();
        self.procs[index].host_id = Some(host_id);
        Ok(index)
    }

    /// Starts a `trellis controller` on the plugin folder with a short host timeout; returns its
    /// index once it serves.
    pub async fn add_controller(&mut self) -> anyhow::Result<usize> {
        self.add_controller_with(&[]).await
    }

    /// Like [`ProcessLattice::add_controller`], with more arguments (e.g. `--http ADDR`).
    pub async fn add_controller_with(&mut self, extra: &[&str]) -> anyhow::Result<usize> {
        let timeout = HOST_TIMEOUT_SECS.to_string();
        let mut args = vec!["--host-timeout", timeout.as_str()];
        args.extend_from_slice(extra);
        self.start_controller(&args).await
    }

    /// A controller with the defaults an operator gets (host timeout, heartbeats), for
    /// measuring what they give.
    pub async fn add_controller_defaults(&mut self) -> anyhow::Result<usize> {
        self.start_controller(&[]).await
    }

    /// Starts a `trellis controller` with exactly these arguments beyond the plugin folder and
    /// the suite's plugin deadline (no test host timeout): for tests that set their own.
    pub async fn start_controller(&mut self, extra: &[&str]) -> anyhow::Result<usize> {
        let n = self
            .procs
            .iter()
            .filter(|p| p.role == Role::Controller)
            .count();
        // The default plugin deadline (50 ms a call) is for a quiet machine; this suite runs on
        // two cores shared with compilers, where a debug-build controller's normal call now and
        // then takes longer, fails its pass and so fails the app's status (and `app deploy`).
        // A looping plugin still runs into this deadline, just later.
        let config = self.dir.path().join("controller.toml");
        std::fs::write(
            &config,
            format!("[plugins]\ndeadline_ms = {PLUGIN_DEADLINE_MS}\n"),
        )?;
        let args: Vec<String> = vec![
            "controller".into(),
            "--plugins".into(),
            self.plugin_dir.display().to_string(),
            "--config".into(),
            config.display().to_string(),
        ];
        let args: Vec<String> = args
            .into_iter()
            .chain(extra.iter().map(|a| a.to_string()))
            .collect();
        let index = self.spawn(&format!("controller-{n}"), Role::Controller, &args)?;
        self.wait_for_line(index, "controller running").await?;
        Ok(index)
    }

    /// Starts `program` with `args` and `env` as process `name` (its log in the test's folder,
    /// killed with the lattice); returns its index once its output has a line containing
    /// `ready`, with that line.
    pub async fn add_program(
        &mut self,
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
        ready: &str,
    ) -> anyhow::Result<(usize, String)> {
        let mut command = Command::new(program);
        command.args(args);
        for (key, value) in env {
            command.env(key, value);
        }
        let index = self.spawn_command(name, Role::Program, command)?;
        let line = self.wait_for_line(index, ready).await?;
        Ok((index, line))
    }

    fn spawn(&mut self, name: &str, role: Role, args: &[String]) -> anyhow::Result<usize> {
        let mut command = Command::new(trellis_bin());
        command
            .args(args)
            .env("TRELLIS_NATS", self.nats.url())
            .env("TRELLIS_LATTICE", &self.lattice)
            .env_remove("TRELLIS_CONFIG")
            // Plain text in the log files.
            .env("NO_COLOR", "1")
            .env(
                "TRELLIS_LOG",
                "info,async_nats=warn,cranelift=warn,wasmtime=warn",
            );
        self.spawn_command(name, role, command)
    }

    fn spawn_command(
        &mut self,
        name: &str,
        role: Role,
        mut command: Command,
    ) -> anyhow::Result<usize> {
        use std::os::unix::process::CommandExt;
        let log = self.dir.path().join(format!("{name}.log"));
        let out = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            // Its own process group, so a teardown can kill it and anything it started.
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        self.procs.push(Proc {
            name: name.to_string(),
            role,
            host_id: None,
            log,
            child: Some(child),
        });
        Ok(self.procs.len() - 1)
    }

    /// Waits until the process's log has a line containing `needle`; fails early if it exits.
    async fn wait_for_line(&mut self, index: usize, needle: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + START_PATIENCE;
        loop {
            let text = std::fs::read_to_string(&self.procs[index].log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                return Ok(line.to_string());
            }
            let proc = &mut self.procs[index];
            if !proc.is_running() {
                bail!("{} exited before saying {needle:?}:\n{text}", proc.name);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not say {needle:?} within {START_PATIENCE:?}",
                    proc.name
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Kills a node or controller with SIGKILL (no goodbye: no host_stopped event, no lease
    /// released).
    pub fn kill(&mut self, index: usize) {
        self.procs[index].kill();
    }

    /// Freezes a node or controller with SIGSTOP: it keeps its connections open but reads,
    /// sends and renews nothing, as a hung machine, until [`ProcessLattice::resume`].
    pub fn pause(&mut self, index: usize) {
        self.procs[index].signal("STOP");
    }

    /// Thaws a process frozen by [`ProcessLattice::pause`] (SIGCONT).
    pub fn resume(&mut self, index: usize) {
        self.procs[index].signal("CONT");
    }

    /// The host ids of the nodes started so far (killed ones included), in start order.
    pub fn host_ids(&self) -> Vec<String> {
        self.procs
            .iter()
            .filter_map(|p| p.host_id.clone())
            .collect()
    }

    /// Kills nats-server and starts it again on the same port and JetStream store.
    pub fn restart_nats(&mut self) -> anyhow::Result<()> {
        self.nats.restart()
    }

    /// Stops nats-server, keeps it away for `down`, and starts it again on the same store.
    pub fn restart_nats_after(&mut self, down: Duration) -> anyhow::Result<()> {
        self.nats.restart_after(down)
    }

    /// The controller that owns `app` now, as the owners bucket says.
    pub async fn owner(&self, app: &str) -> Option<String> {
        let client = async_nats::connect(self.nats.url()).await.ok()?;
        let js = async_nats::jetstream::new(client);
        let owners = js
            .get_key_value(trellis_controller::ownership::owners_bucket(&self.lattice))
            .await
            .ok()?;
        let value = owners.get(app).await.ok()??;
        serde_json::from_slice::<trellis_controller::ownership::OwnerRecord>(&value)
            .ok()
            .map(|r| r.owner)
    }

    /// The index in [`ProcessLattice::procs`] of the controller whose log says it took
    /// `app`'s ownership as `owner`.
    pub fn controller_that_took(&self, owner: &str) -> Option<usize> {
        self.procs.iter().position(|p| {
            p.role == Role::Controller
                && std::fs::read_to_string(&p.log)
                    .unwrap_or_default()
                    .lines()
                    .any(|l| l.contains("took ownership") && l.contains(owner))
        })
    }

    /// The whole log of every process whose name starts with `prefix` (`controller`, `node-1`).
    pub fn logs_of(&self, prefix: &str) -> String {
        self.procs
            .iter()
            .filter(|p| p.name.starts_with(prefix))
            .map(|p| std::fs::read_to_string(&p.log).unwrap_or_default())
            .collect()
    }

    pub async fn api(&self) -> anyhow::Result<ApiClient> {
        ApiClient::connect(&self.nats.url(), &self.lattice).await
    }

    /// Runs `trellis {args}` against this lattice, as a user at a shell would.
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<CliOutput> {
        let mut command = tokio::process::Command::new(trellis_bin());
        command
            .args(args)
            .env("TRELLIS_NATS", self.nats.url())
            .env("TRELLIS_LATTICE", &self.lattice)
            .env_remove("TRELLIS_CONFIG")
            .env("TRELLIS_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(30), command.output())
            .await
            .with_context(|| format!("`trellis {}` ran over 30 s", args.join(" ")))??;
        Ok(CliOutput {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Starts counting every control-interface message on the lattice.
    pub async fn count_commands(&self) -> anyhow::Result<CommandCounter> {
        CommandCounter::start(&self.nats.url(), &self.lattice).await
    }

    /// The last `LOG_TAIL` lines of every process's log, nats-server's too.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        let mut logs: Vec<(String, PathBuf)> = self
            .procs
            .iter()
            .map(|p| (p.name.clone(), p.log.clone()))
            .collect();
        logs.push((
            "nats-server".into(),
            self.dir.path().join("nats").join("nats-server.log"),
        ));
        for (name, path) in logs {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            out.push_str(&format!(
                "----- {name} ({}, last {} of {} lines) -----\n",
                path.display(),
                tail.len(),
                lines.len()
            ));
            for line in tail {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for ProcessLattice {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== scenario `{}` failed; the processes' logs =====\n{}",
                self.scenario,
                self.log_tails()
            );
        }
        for proc in &mut self.procs {
            proc.kill();
        }
    }
}

/// What a `trellis` command printed and how it exited.
#[derive(Debug)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// stdout and stderr together, for messages.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// A message as seen on the wire: its subject and payload.
pub type Sent = (String, Vec<u8>);

/// Every control-interface message sent on a lattice (`wasmbus.ctl.v1.{lattice}.>`), recorded
/// as it goes by.
pub struct CommandCounter {
    seen: Arc<Mutex<Vec<Sent>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CommandCounter {
    pub async fn start(nats_url: &str, lattice: &str) -> anyhow::Result<Self> {
        let client = async_nats::connect(nats_url).await?;
        let mut sub = client
            .subscribe(format!("wasmbus.ctl.v1.{lattice}.>"))
            .await?;
        // The subscription is in place on the server before anything is sent.
        client.flush().await?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let _client = client;
            while let Some(msg) = sub.next().await {
                record
                    .lock()
                    .unwrap()
                    .push((msg.subject.to_string(), msg.payload.to_vec()));
            }
        });
        Ok(Self { seen, task })
    }

    /// Forgets what was recorded so far.
    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }

    /// The messages whose subject contains `fragment` (e.g. `.component.scale.`), in order.
    pub fn matching(&self, fragment: &str) -> Vec<Sent> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| s.contains(fragment))
            .cloned()
            .collect()
    }

    /// Each distinct command (subject and payload) with how often it was sent; queries
    /// (`.host.` ping/get/inventory) left out, every controller sends those.
    pub fn counts(&self) -> HashMap<Sent, usize> {
        let mut counts = HashMap::new();
        for (subject, payload) in self.seen.lock().unwrap().iter() {
            if subject.contains(".host.") {
                continue;
            }
            *counts
                .entry((subject.clone(), payload.clone()))
                .or_default() += 1;
        }
        counts
    }

    /// Commands sent more than once, readable.
    pub fn duplicates(&self) -> Vec<String> {
        self.counts()
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|((s, p), n)| format!("{n}× {s} {}", String::from_utf8_lossy(&p)))
            .collect()
    }
}

impl Drop for CommandCounter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls `check` until it returns `Ok`, at most `within`; `Err` carries what it saw, and the
/// last of those is the failure message.
pub async fn wait_until<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) if started.elapsed() > within => {
                panic!("{what}: not within {within:?}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

impl ProcessLattice {
    /// The host ids of the hosts not killed (trellis nodes, and programs given a host id).
    pub fn live_host_ids(&self) -> Vec<String> {
        self.procs
            .iter()
            .filter(|p| p.child.is_some())
            .filter_map(|p| p.host_id.clone())
            .collect()
    }

    /// Each live node's inventory, asked of the node itself (a node that does not answer within
    /// 2 s is left out).
    pub async fn inventories(
        &self,
        api: &ApiClient,
    ) -> BTreeMap<String, trellis_lattice::ctl::HostInventory> {
        let mut out = BTreeMap::new();
        for host in self.live_host_ids() {
            if let Ok(Ok(inventory)) =
                tokio::time::timeout(Duration::from_secs(2), api.inventory(&host)).await
            {
                out.insert(host, inventory);
            }
        }
        out
    }

    /// Instances of `component_id` per live node (nodes without any left out).
    pub async fn instances(&self, api: &ApiClient, component_id: &str) -> BTreeMap<String, u32> {
        self.inventories(api)
            .await
            .into_iter()
            .filter_map(|(host, inventory)| {
                inventory
                    .components
                    .iter()
                    .find(|c| c.id == component_id)
                    .map(|c| (host, c.max_instances))
            })
            .collect()
    }

    /// Everything running on the live nodes: (host, component or provider id).
    pub async fn everything_running(&self, api: &ApiClient) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (host, inventory) in self.inventories(api).await {
            for c in &inventory.components {
                out.push((host.clone(), c.id.clone()));
            }
            for p in &inventory.providers {
                out.push((host.clone(), p.id.clone()));
            }
        }
        out
    }
}
