//! Isolation between apps on a simulated lattice (`trellis-sim`) with a real nats-server and the
//! built scaler plugins: a manifest that claims another deployed app's component id, config or
//! key-value bucket is refused at put and at deploy with a message naming that app; and
//! undeploying one of two apps leaves the other's configs, link and instances untouched.
//!
//! The plugins come from `build/plugins` (scripts/build-wasm.sh makes them).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt as _;
use serde::de::DeserializeOwned;
use trellis_bus::nats_server::NatsServer;
use trellis_controller::{Controller, ControllerConfig, LoopSettings};
use trellis_lattice::api::{
    DeployModelResponse, DeployResult, PutModelResponse, PutResult, StatusResponse, StatusType,
    Subjects,
};
use trellis_lattice::ctl::{self, CtlResponse, HostInventory};
use trellis_sim::{SimConfig, SimLattice};

mod common;

const LATTICE: &str = "isolation";

/// App `name`: a worker with a config of its own, linked over `wasi:keyvalue` to a key-value
/// provider with a source config and a target config naming `bucket`. `worker_id` sets the
/// worker's id when given.
fn app(name: &str, version: &str, worker_id: Option<&str>, bucket: &str) -> String {
    let id = worker_id
        .map(|id| format!("\n        id: {id}"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {name}
  annotations:
    version: {version}
spec:
  components:
    - name: worker
      type: component
      properties:
        image: file:///simulated/worker.wasm{id}
        config:
          - name: {name}-settings
            properties:
              level: info
      traits:
        - type: spreadscaler
          properties:
            instances: 2
        - type: link
          properties:
            namespace: wasi
            package: keyvalue
            interfaces: [store]
            source:
              config:
                - name: {name}-link
                  properties:
                    timeout: 5s
            target:
              name: kv
              config:
                - name: {name}-bucket
                  properties:
                    bucket: {bucket}
    - name: kv
      type: capability
      properties:
        image: builtin:keyvalue
      traits:
        - type: spreadscaler
          properties:
            instances: 1
"#
    )
}

struct Lattice {
    nats: NatsServer,
    _plugins: tempfile::TempDir,
    controller: Controller,
    sim: SimLattice,
    client: async_nats::Client,
}

impl Lattice {
    async fn start() -> Self {
        let nats = NatsServer::start_temporary().unwrap();
        let plugins = common::plugin_dir(&["spreadscaler", "configscaler", "linkscaler"]);
        let controller = Controller::start(ControllerConfig {
            nats_url: nats.url(),
            lattices: vec![LATTICE.into()],
            plugin_dir: plugins.path().to_path_buf(),
            settings: LoopSettings {
                resync_interval: Duration::from_millis(500),
                host_timeout: Duration::from_secs(5),
                command_timeout: Duration::from_secs(10),
                debounce: Duration::from_millis(10),
                ..LoopSettings::default()
            },
            ..ControllerConfig::default()
        })
        .await
        .unwrap();
        let sim = SimLattice::start(SimConfig {
            nats_url: nats.url(),
            lattice: LATTICE.into(),
            hosts: 2,
            heartbeat_interval: Duration::from_millis(500),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let client = async_nats::connect(nats.url()).await.unwrap();
        Self {
            nats,
            _plugins: plugins,
            controller,
            sim,
            client,
        }
    }

    async fn request<T: DeserializeOwned>(&self, subject: String, body: &str) -> T {
        common::request(&self.client, subject, body).await
    }

    async fn put(&self, text: &str) -> PutModelResponse {
        self.request(Subjects::new(LATTICE).put(), text).await
    }

    async fn deploy(&self, name: &str, version: &str) -> DeployModelResponse {
        let body = format!(r#"{{"version":"{version}"}}"#);
        self.request(Subjects::new(LATTICE).deploy(name), &body)
            .await
    }

    async fn put_and_deploy(&self, name: &str, text: &str) {
        let put = self.put(text).await;
        assert_ne!(put.result, PutResult::Error, "{}", put.message);
        let deploy = self.deploy(name, &put.current_version).await;
        assert_eq!(
            deploy.result,
            DeployResult::Acknowledged,
            "{}",
            deploy.message
        );
    }

    async fn undeploy(&self, name: &str) {
        let resp: DeployModelResponse = self
            .request(Subjects::new(LATTICE).undeploy(name), "{}")
            .await;
        assert_eq!(resp.result, DeployResult::Acknowledged, "{}", resp.message);
    }

    async fn deployed(&self, name: &str) -> bool {
        let resp: StatusResponse = self.request(Subjects::new(LATTICE).status(name), "").await;
        resp.status
            .is_some_and(|s| s.info.status_type == StatusType::Deployed)
    }

    /// The lattice's named configs, with their values.
    async fn configs(&self) -> BTreeMap<String, String> {
        let js = async_nats::jetstream::new(self.client.clone());
        let kv = js.get_key_value(ctl::config_bucket(LATTICE)).await.unwrap();
        let keys: Vec<String> = kv.keys().await.unwrap().try_collect().await.unwrap();
        let mut configs = BTreeMap::new();
        for key in keys {
            if let Some(value) = kv.get(&key).await.unwrap() {
                configs.insert(key, String::from_utf8_lossy(&value).into_owned());
            }
        }
        configs
    }

    /// The keys of the lattice's links (`Link::key`), as the hosts list them.
    async fn links(&self) -> Vec<String> {
        let links: CtlResponse<Vec<ctl::Link>> = self
            .request(ctl::Subjects::new(LATTICE).link_get(), "")
            .await;
        let mut keys: Vec<String> = links
            .response
            .expect("a list of links")
            .iter()
            .map(ctl::Link::key)
            .collect();
        keys.sort();
        keys
    }

    /// Per provider id, on how many hosts it runs (as the hosts' inventories say).
    async fn providers(&self) -> BTreeMap<String, usize> {
        let mut providers = BTreeMap::new();
        for host in self.sim.host_ids() {
            let inventory: CtlResponse<HostInventory> = self
                .request(ctl::Subjects::new(LATTICE).host_get(host), "")
                .await;
            for p in inventory.response.expect("an inventory").providers {
                *providers.entry(p.id).or_default() += 1;
            }
        }
        providers
    }

    /// Per component id, its instance count over the lattice.
    fn components(&self) -> BTreeMap<String, u32> {
        self.sim
            .instance_totals()
            .into_iter()
            .map(|(id, (count, _))| (id, count))
            .collect()
    }

    async fn stop(self) {
        self.controller.stop().await;
        self.sim.stop().await.unwrap();
        drop(self.nats);
    }
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    common::eventually(what, || {
        let done = check();
        async move { done.await.then_some(()) }
    })
    .await
}

/// The configs of app `name`, as they are on the lattice.
fn configs_of(configs: &BTreeMap<String, String>, name: &str) -> BTreeMap<String, String> {
    configs
        .iter()
        .filter(|(key, _)| key.starts_with(&format!("{name}-")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeploying_one_app_leaves_the_other_untouched() {
    let lattice = Lattice::start().await;
    lattice
        .put_and_deploy("web", &app("web", "v1", None, "web"))
        .await;
    lattice
        .put_and_deploy("shop", &app("shop", "v1", None, "shop"))
        .await;
    eventually("both apps deployed", || async {
        lattice.deployed("web").await && lattice.deployed("shop").await
    })
    .await;
    let configs = lattice.configs().await;
    let web_configs = configs_of(&configs, "web");
    assert_eq!(
        web_configs.keys().collect::<Vec<_>>(),
        ["web-bucket", "web-link", "web-settings"]
    );
    assert_eq!(configs_of(&configs, "shop").len(), 3, "{configs:?}");
    let web_links: Vec<String> = lattice
        .links()
        .await
        .into_iter()
        .filter(|k| k.contains("web-worker"))
        .collect();
    assert_eq!(web_links.len(), 1, "{:?}", lattice.links().await);
    let components = lattice.components();
    assert_eq!(components.get("web-worker"), Some(&2));
    assert_eq!(components.get("shop-worker"), Some(&2));
    let providers = lattice.providers().await;
    assert_eq!(providers.get("web-kv"), Some(&1), "{providers:?}");
    assert_eq!(providers.get("shop-kv"), Some(&1), "{providers:?}");

    lattice.undeploy("shop").await;
    eventually("shop's configs, instances and provider removed", || async {
        configs_of(&lattice.configs().await, "shop").is_empty()
            && !lattice.components().contains_key("shop-worker")
            && !lattice.providers().await.contains_key("shop-kv")
    })
    .await;
    // A few more passes, in case a late cleanup would reach further.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    assert_eq!(
        configs_of(&lattice.configs().await, "web"),
        web_configs,
        "web's configs are untouched"
    );
    let links = lattice.links().await;
    assert!(
        links.iter().all(|k| !k.contains("shop-worker")),
        "{links:?}"
    );
    assert_eq!(
        links
            .into_iter()
            .filter(|k| k.contains("web-worker"))
            .collect::<Vec<_>>(),
        web_links,
        "web's link is untouched"
    );
    assert_eq!(lattice.components().get("web-worker"), Some(&2));
    assert_eq!(lattice.providers().await.get("web-kv"), Some(&1));
    assert!(lattice.deployed("web").await, "web stays deployed");
    lattice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_claiming_what_a_deployed_app_owns_is_refused() {
    let lattice = Lattice::start().await;
    lattice
        .put_and_deploy("web", &app("web", "v1", None, "web"))
        .await;

    // Put: another app's component id, config or bucket.
    let stolen_id = app("intruder", "v1", Some("web-worker"), "intruder");
    let stolen_config = app("intruder", "v1", None, "intruder")
        .replace("name: intruder-settings", "name: web-settings");
    let stolen_bucket = app("intruder", "v1", None, "web");
    for (case, text, expected) in [
        (
            "id",
            stolen_id,
            r#"component id "web-worker" belongs to app "web" (deployed); choose another id or undeploy web"#,
        ),
        (
            "config",
            stolen_config,
            r#"config "web-settings" belongs to app "web" (deployed); rename the config or undeploy web"#,
        ),
        (
            "bucket",
            stolen_bucket,
            r#"key-value bucket "web" belongs to app "web" (deployed); choose another bucket or undeploy web"#,
        ),
    ] {
        let put = lattice.put(&text).await;
        assert_eq!(put.result, PutResult::Error, "{case}: accepted");
        assert_eq!(put.message, expected, "{case}");
        assert_eq!(put.name, "intruder", "{case}");
    }
    let versions: trellis_lattice::api::VersionResponse = lattice
        .request(Subjects::new(LATTICE).versions("intruder"), "")
        .await;
    assert!(versions.versions.is_empty(), "nothing of intruder stored");

    // A new version of web itself keeps its names.
    let put = lattice.put(&app("web", "v2", None, "web")).await;
    assert_eq!(put.result, PutResult::NewVersion, "{}", put.message);

    // Stored-only apps do not conflict; the first deployed owns the names, and the other's
    // deploy is refused.
    lattice.undeploy("web").await;
    let put = lattice
        .put(&app("copycat", "v1", Some("web-worker"), "copy"))
        .await;
    assert_eq!(put.result, PutResult::Created, "{}", put.message);
    let deploy = lattice.deploy("copycat", "v1").await;
    assert_eq!(
        deploy.result,
        DeployResult::Acknowledged,
        "{}",
        deploy.message
    );
    let deploy = lattice.deploy("web", "v2").await;
    assert_eq!(deploy.result, DeployResult::Error);
    assert_eq!(
        deploy.message,
        r#"component id "web-worker" belongs to app "copycat" (deployed); choose another id or undeploy copycat"#
    );
    lattice.stop().await;
}
