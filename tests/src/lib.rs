//! Shared pieces of the end-to-end tests: where the built artifacts are, a lattice started for
//! one test (a real nats-server, a controller and a node), and a tiny HTTP client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use trellis_cli::client::ApiClient;
use trellis_cli::nats_server::NatsServer;
use trellis_controller::{Controller, ControllerConfig, LoopSettings};
use trellis_node::{Node, NodeConfig};

pub mod process;
pub mod real_programs;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// A wasm file made by scripts/build-wasm.sh (`build/{folder}/{name}.wasm`), or a clear failure
/// saying how to make it.
fn built(folder: &str, name: &str) -> PathBuf {
    let path = repo_root()
        .join("build")
        .join(folder)
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-wasm.sh first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A built plugin (`build/plugins/{name}.wasm`).
pub fn built_plugin(name: &str) -> PathBuf {
    built("plugins", name)
}

/// A built example component (`build/examples/{name}.wasm`).
pub fn built_example(name: &str) -> PathBuf {
    built("examples", name)
}

/// A runtime test guest (`build/fixtures/{name}.wasm`).
pub fn built_fixture(name: &str) -> PathBuf {
    built("fixtures", name)
}

/// The echo example's manifest (images made absolute, as the CLI does), with its HTTP address
/// moved to a free port. Returns the manifest and the address.
pub fn echo_manifest() -> (trellis_lattice::Manifest, String) {
    built_example("echo");
    let (manifest, mut addresses) = example_manifest("echo");
    assert_eq!(
        addresses.len(),
        1,
        "examples/echo/app.yaml has one HTTP address to move"
    );
    (manifest, addresses.remove(0))
}

/// App `name` at `version`: the echo component (`instances` of it by spreadscaler, its image
/// at `image`) behind the built-in HTTP server listening on `address`. The manifest the
/// end-to-end tests deploy, upgrade, race and break.
pub fn echo_http_app(
    name: &str,
    version: &str,
    image: &Path,
    instances: u32,
    address: &str,
) -> String {
    echo_only(name, version, image, instances)
        + &http_server_component(name, address, &spread_trait(1, None))
}

/// App `web` at `version`: the echo component alone, `instances` of it by spreadscaler.
pub fn echo_app(version: &str, instances: u32) -> String {
    echo_only("web", version, &built_example("echo"), instances)
}

/// App `name` at `version` whose only component is echo (image at `image`), `instances` of it
/// by spreadscaler; the component list is last, so more components can follow.
pub fn echo_only(name: &str, version: &str, image: &Path, instances: u32) -> String {
    echo_app_yaml(name, version, "", image, &spread_trait(instances, None))
}

/// App `name` at `version`, with `annotations` (YAML lines indented by 4, under
/// `metadata.annotations`), whose component `echo` (image at `image`) carries `traits` (trait
/// entries indented by 8, e.g. [`spread_trait`]); the component list is last, so more
/// components can follow (e.g. [`http_server_component`]).
pub fn echo_app_yaml(
    name: &str,
    version: &str,
    annotations: &str,
    image: &Path,
    traits: &str,
) -> String {
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {name}
  annotations:
    version: {version}
{annotations}spec:
  components:
    - name: echo
      type: component
      properties:
        image: file://{image}
      traits:
{traits}"#,
        image = image.display()
    )
}

/// A spreadscaler trait entry (indented by 8) for `instances`, all on hosts labelled
/// `zone: {zone}` when a zone is given.
pub fn spread_trait(instances: u32, zone: Option<&str>) -> String {
    let spread = zone.map_or(String::new(), |zone| {
        format!(
            "            spread:\n              - name: {zone}\n                requirements:\n                  zone: {zone}\n"
        )
    });
    format!(
        "        - type: spreadscaler\n          properties:\n            instances: {instances}\n{spread}"
    )
}

/// The built-in HTTP server of app `app`, placed by `placement` (trait entries indented by
/// 8, e.g. [`spread_trait`]), linked to its `echo` component and listening on `address`
/// (through the config `{app}-http`): a component entry to follow [`echo_app_yaml`].
pub fn http_server_component(app: &str, address: &str, placement: &str) -> String {
    format!(
        r#"    - name: httpserver
      type: capability
      properties:
        image: builtin:http-server
      traits:
{placement}        - type: link
          properties:
            target: echo
            namespace: wasi
            package: http
            interfaces: [incoming-handler]
            source:
              config:
                - name: {app}-http
                  properties:
                    address: {address}
"#
    )
}

/// An example's manifest (`examples/{name}/app.yaml`, images made absolute as the CLI does)
/// with every HTTP address of its links moved to a free port. Returns the manifest and the
/// addresses in the order they appear.
pub fn example_manifest(name: &str) -> (trellis_lattice::Manifest, Vec<String>) {
    let path = repo_root().join("examples").join(name).join("app.yaml");
    let mut manifest = trellis_cli::client::load_manifest_file(&path)
        .unwrap_or_else(|e| panic!("{} loads: {e:#}", path.display()));
    let mut addresses = Vec::new();
    for component in &mut manifest.spec.components {
        for t in component.traits.iter_mut().flatten() {
            if t.trait_type != "link" {
                continue;
            }
            // `get_mut`, not indexing: indexing would add a null `source` to links without one.
            let configs = t
                .properties
                .get_mut("source")
                .and_then(|source| source.get_mut("config"))
                .and_then(|config| config.as_array_mut());
            for config in configs.into_iter().flatten() {
                if config["properties"].get("address").is_some() {
                    let address = format!(
                        "127.0.0.1:{}",
                        trellis_cli::nats_server::free_port().expect("a free port")
                    );
                    config["properties"]["address"] = address.clone().into();
                    addresses.push(address);
                }
            }
        }
    }
    (manifest, addresses)
}

/// Copies a file into place through a temporary name, as an operator's deploy tool would, so
/// a watcher never sees half a file.
pub fn install_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp)?;
    std::fs::rename(&tmp, to)?;
    Ok(())
}

/// Settings that make a test lattice converge quickly.
pub fn fast_settings() -> LoopSettings {
    LoopSettings {
        resync_interval: Duration::from_millis(500),
        host_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(10),
        debounce: Duration::from_millis(10),
        ..LoopSettings::default()
    }
}

/// A lattice for one test: nats-server, one controller, nodes; all stopped on drop.
pub struct TestLattice {
    pub dir: tempfile::TempDir,
    pub nats: NatsServer,
    pub controller: Option<Controller>,
    pub nodes: Vec<Node>,
    pub lattice: String,
}

impl TestLattice {
    /// Starts nats-server and a controller whose plugin folder holds the named built plugins.
    pub async fn start(plugins: &[&str]) -> anyhow::Result<Self> {
        Self::start_with(plugins, |_| {}).await
    }

    /// As [`TestLattice::start`], with the controller's config changed by `change` first.
    pub async fn start_with(
        plugins: &[&str],
        change: impl FnOnce(&mut ControllerConfig),
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let nats = NatsServer::start(0, &dir.path().join("nats"))?;
        let plugin_dir = dir.path().join("plugins");
        std::fs::create_dir_all(&plugin_dir)?;
        for name in plugins {
            std::fs::copy(built_plugin(name), plugin_dir.join(format!("{name}.wasm")))?;
        }
        let lattice = "test".to_string();
        let mut config = ControllerConfig {
            nats_url: nats.url(),
            lattices: vec![lattice.clone()],
            plugin_dir,
            settings: fast_settings(),
            ..ControllerConfig::default()
        };
        change(&mut config);
        let controller = Controller::start(config).await?;
        Ok(Self {
            dir,
            nats,
            controller: Some(controller),
            nodes: Vec::new(),
            lattice,
        })
    }

    pub fn plugin_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    pub async fn add_node(&mut self, labels: &[(&str, &str)]) -> anyhow::Result<&Node> {
        let node = Node::start(NodeConfig {
            nats_url: self.nats.url(),
            lattice: self.lattice.clone(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            heartbeat_interval: Duration::from_secs(1),
            // The built examples, and the images a test writes into its folder.
            allowed_image_dirs: vec![repo_root().join("build"), self.dir.path().to_path_buf()],
            ..NodeConfig::default()
        })
        .await?;
        self.nodes.push(node);
        Ok(self.nodes.last().expect("just pushed"))
    }

    pub async fn api(&self) -> anyhow::Result<ApiClient> {
        ApiClient::connect(&self.nats.url(), &self.lattice).await
    }

    /// A lattice with the spreadscaler and linkscaler, one node, and the echo example deployed
    /// on it; with its API client, and echo's manifest and HTTP address.
    pub async fn with_echo_deployed(
    ) -> anyhow::Result<(Self, ApiClient, trellis_lattice::Manifest, String)> {
        let mut lattice = Self::start(&["spreadscaler", "linkscaler"]).await?;
        lattice.add_node(&[]).await?;
        let api = lattice.api().await?;
        let (manifest, address) = echo_manifest();
        api.put(&manifest).await?;
        api.deploy("echo", None).await?;
        api.wait_deployed("echo", Duration::from_secs(60), |_| {})
            .await?;
        Ok((lattice, api, manifest, address))
    }

    /// Waits until the controller's runtime has reloaded its folder after a change.
    pub async fn wait_plugin_reload(&self, since_generation: u64) -> anyhow::Result<()> {
        let runtime = self
            .controller
            .as_ref()
            .expect("controller running")
            .runtime();
        let deadline = Instant::now() + Duration::from_secs(5);
        while runtime.generation() == since_generation {
            if Instant::now() > deadline {
                bail!("the plugin folder was not reloaded within 5s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

/// Sends `GET path` to `address` and returns (status code, body). Retries connection refusals
/// for up to `patience` (a listener may still be starting).
pub fn http_get(address: &str, path: &str, patience: Duration) -> anyhow::Result<(u16, String)> {
    let deadline = Instant::now() + patience;
    let mut stream = loop {
        match TcpStream::connect(address) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e).with_context(|| format!("connecting to {address}")),
        }
    };
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("no HTTP header end in the response")?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .context("no status code")?
        .parse()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((code, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
