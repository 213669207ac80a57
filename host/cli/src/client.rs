//! The client side of the controller API (what `trellis app …` sends), usable from tests.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use trellis_bus::gather::{gather, Window};
use trellis_lattice::api::*;
use trellis_lattice::ctl::{CtlResponse, Link};
use trellis_lattice::Manifest;

use crate::connect::NatsSettings;
use crate::failure::Failure;

/// How long an API request may take before we say the controller is not answering.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// Apps per `model.list` answer. A summary carries each scaler's status, a few hundred bytes
/// to a few KiB; 200 of them stay far below NATS's 1 MiB default message size.
const LIST_PAGE: usize = 200;
/// How long an app must stay failed before a wait for it to deploy gives up early: the
/// controller retries a failed command after 0.5, 1 and 2 s, and a first failure (a host that
/// had not seen a config yet) is often fixed by the first retry.
const FAILURE_SETTLE: Duration = Duration::from_secs(5);

/// A failed answer, whatever the request's own answer shape is.
#[derive(Deserialize)]
struct ErrorAnswer {
    result: String,
    #[serde(default)]
    code: Option<trellis_lattice::ErrorCode>,
    #[serde(default)]
    message: String,
}

/// Hosts answer `host.ping` at once; `get hosts` lists those that answered within a second.
const PING_WINDOW: Window = Window::fixed(Duration::from_secs(1));

pub struct ApiClient {
    client: async_nats::Client,
    subjects: Subjects,
    lattice: String,
}

impl ApiClient {
    /// A client of the API under the default prefix, `wadm.api`.
    pub fn new(client: async_nats::Client, lattice: &str) -> Self {
        Self {
            client,
            subjects: Subjects::new(lattice),
            lattice: lattice.to_string(),
        }
    }

    /// The same client, asking a controller that serves the API under `prefix` (checked by
    /// [`trellis_lattice::api::api_prefix`], as `--api-prefix` is).
    pub fn with_api_prefix(mut self, prefix: &str) -> Self {
        self.subjects = Subjects::with_prefix(prefix, &self.lattice);
        self
    }

    /// Connects without credentials (a local lattice, tests).
    pub async fn connect(nats_url: &str, lattice: &str) -> anyhow::Result<Self> {
        Self::connect_with(&NatsSettings::new(nats_url, lattice)).await
    }

    /// Connects with the resolved connection flags (credentials, TLS).
    pub async fn connect_with(settings: &NatsSettings) -> anyhow::Result<Self> {
        Ok(Self::new(settings.connect().await?, &settings.lattice))
    }

    pub fn lattice(&self) -> &str {
        &self.lattice
    }

    async fn request<T: DeserializeOwned>(
        &self,
        subject: String,
        body: Vec<u8>,
    ) -> anyhow::Result<T> {
        let max = self.client.server_info().max_payload;
        if body.len() > max {
            bail!(
                "the request on {subject} is {} bytes, over the NATS server's max payload of {max} bytes; \
                 send less (a manifest may have at most {} bytes)",
                body.len(),
                trellis_lattice::limits::MAX_MANIFEST_BYTES
            );
        }
        let reply = tokio::time::timeout(API_TIMEOUT, self.client.request(subject.clone(), body.into()))
            .await
            .map_err(|_| anyhow::anyhow!("no answer on {subject} within {API_TIMEOUT:?}: is trellis running for lattice `{}`?", self.lattice))?
            .map_err(|e| match e.kind() {
                async_nats::RequestErrorKind::NoResponders => anyhow::anyhow!(
                    "nobody in lattice `{}` listens on {subject}; start trellis with `trellis up`, or `trellis controller` and `trellis node`",
                    self.lattice
                ),
                _ => anyhow::anyhow!("request {subject} failed: {e}"),
            })?;
        serde_json::from_slice(&reply.payload).map_err(|e| {
            // An answer of another shape may be the controller's refusal (an answer too large
            // for one message, say): say what it says.
            let refusal: Option<ErrorAnswer> = serde_json::from_slice(&reply.payload).ok();
            match refusal {
                Some(r) if r.result == "error" => crate::failure::api_error(r.code, r.message),
                _ => anyhow::Error::new(e).context(format!("unreadable answer on {subject}")),
            }
        })
    }

    /// The controller's findings about a manifest (not stored).
    pub async fn validate(
        &self,
        text: &str,
    ) -> anyhow::Result<trellis_lattice::api::ValidateResponse> {
        self.request(self.subjects.validate(), text.as_bytes().to_vec())
            .await
    }

    /// Puts a manifest given as text. The text is sent as it is: the controller checks it.
    pub async fn put_text(&self, text: &str) -> anyhow::Result<PutModelResponse> {
        self.request(self.subjects.put(), text.as_bytes().to_vec())
            .await
    }

    pub async fn put(&self, manifest: &Manifest) -> anyhow::Result<PutModelResponse> {
        self.request(self.subjects.put(), serde_json::to_vec(manifest)?)
            .await
    }

    pub async fn deploy(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> anyhow::Result<DeployModelResponse> {
        let body = serde_json::to_vec(&DeployModelRequest {
            version: version.map(String::from),
        })?;
        self.request(self.subjects.deploy(name), body).await
    }

    /// Undeploys `name`; with `keep_running`, non-destructively: the controller stops
    /// managing what the app runs and leaves it running.
    pub async fn undeploy(
        &self,
        name: &str,
        keep_running: bool,
    ) -> anyhow::Result<DeployModelResponse> {
        let body = serde_json::to_vec(&UndeployModelRequest {
            non_destructive: keep_running,
        })?;
        self.request(self.subjects.undeploy(name), body).await
    }

    pub async fn status(&self, name: &str) -> anyhow::Result<StatusResponse> {
        self.request(self.subjects.status(name), Vec::new()).await
    }

    /// The manifest of one version (the latest when `version` is `None`).
    pub async fn get(&self, name: &str, version: Option<&str>) -> anyhow::Result<GetModelResponse> {
        let body = serde_json::to_vec(&GetModelRequest {
            version: version.map(String::from),
        })?;
        self.request(self.subjects.get(name), body).await
    }

    pub async fn versions(&self, name: &str) -> anyhow::Result<VersionResponse> {
        self.request(self.subjects.versions(name), Vec::new()).await
    }

    /// Deletes one version, or the whole app when `version` is `None`.
    pub async fn delete(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> anyhow::Result<DeleteModelResponse> {
        let body = serde_json::to_vec(&DeleteModelRequest {
            version: version.map(String::from),
        })?;
        self.request(self.subjects.del(name), body).await
    }

    /// The commands deploying `version` (default: the latest) would issue now, without
    /// issuing them (a trellis extension).
    pub async fn plan(&self, name: &str, version: Option<&str>) -> anyhow::Result<PlanResponse> {
        let body = serde_json::to_vec(&PlanRequest {
            version: version.map(String::from),
        })?;
        self.request(self.subjects.plan(name), body).await
    }

    /// An app's current or last rollout; with `Promote` or `Abort`, marks it so (a trellis
    /// extension). `reason` goes with an abort, for the record.
    pub async fn rollout(
        &self,
        action: RolloutAction,
        name: &str,
        reason: Option<&str>,
    ) -> anyhow::Result<RolloutResponse> {
        let body = serde_json::to_vec(&RolloutRequest {
            reason: reason.map(String::from),
        })?;
        self.request(self.subjects.rollout(action, name), body)
            .await
    }

    /// The hosts as the controller judges them: health, last reported resources and, with
    /// `history`, recent samples (a trellis extension).
    pub async fn host_reports(&self, history: bool) -> anyhow::Result<HostsResponse> {
        let body = serde_json::to_vec(&HostsRequest { history })?;
        self.request(self.subjects.hosts(), body).await
    }

    /// The lattice as the controller's plugins see it now (a trellis extension).
    pub async fn snapshot(&self) -> anyhow::Result<trellis_runtime::LatticeDocument> {
        let response: trellis_lattice::api::SnapshotResponse =
            self.request(self.subjects.snapshot(), Vec::new()).await?;
        match response.snapshot {
            Some(doc) => serde_json::from_value(doc)
                .context("the controller's snapshot is not a lattice state this trellis reads"),
            None => bail!("the controller has no snapshot: {}", response.message),
        }
    }

    /// Deploys the version that was deployed before the current one (a trellis extension).
    pub async fn rollback(&self, name: &str) -> anyhow::Result<DeployModelResponse> {
        self.request(self.subjects.rollback(name), Vec::new()).await
    }

    /// Which version was deployed when (an extension on wadm's subjects).
    pub async fn history(&self, name: &str) -> anyhow::Result<HistoryResponse> {
        self.request(self.subjects.history(name), Vec::new()).await
    }

    /// Every link of the lattice (`link.get` on the control interface; any node answers).
    pub async fn links(&self) -> anyhow::Result<Vec<Link>> {
        let subject = trellis_lattice::ctl::Subjects::new(&self.lattice).link_get();
        let reply: CtlResponse<Vec<Link>> = self.request(subject, Vec::new()).await?;
        if !reply.success {
            bail!("the lattice could not list its links: {}", reply.message);
        }
        Ok(reply.response.unwrap_or_default())
    }

    /// One named config (`config.get.{name}`). A config that does not exist is a
    /// [`Failure::NotFound`] (a trellis node answers it as empty, with the code `not_found`).
    pub async fn config(&self, name: &str) -> anyhow::Result<BTreeMap<String, String>> {
        let subject = trellis_lattice::ctl::Subjects::new(&self.lattice).config_get(name);
        let reply: CtlResponse<BTreeMap<String, String>> =
            self.request(subject, Vec::new()).await?;
        if !reply.success {
            bail!(
                "the lattice could not read config {name}: {}",
                reply.message
            );
        }
        let values = reply.response.unwrap_or_default();
        if reply.code == Some(trellis_lattice::ErrorCode::NotFound) {
            return Err(Failure::NotFound.error(format!(
                "lattice `{}` has no config named `{name}`; `trellis get config` lists them",
                self.lattice
            )));
        }
        Ok(values)
    }

    /// The names of every config of the lattice. The control interface has no way to list
    /// them, so this reads the keys of the lattice's config bucket, where nodes store them.
    pub async fn config_names(&self) -> anyhow::Result<Vec<String>> {
        use futures::TryStreamExt;
        let bucket = trellis_lattice::ctl::config_bucket(&self.lattice);
        let js = async_nats::jetstream::new(self.client.clone());
        let Ok(kv) = js.get_key_value(&bucket).await else {
            // No node has ever joined this lattice: no configs.
            return Ok(Vec::new());
        };
        let mut names: Vec<String> = kv
            .keys()
            .await
            .with_context(|| format!("cannot list the keys of bucket {bucket}"))?
            .try_collect()
            .await
            .with_context(|| format!("cannot list the keys of bucket {bucket}"))?;
        names.sort();
        Ok(names)
    }

    /// Every host that answers a ping within a second.
    pub async fn hosts(&self) -> anyhow::Result<Vec<trellis_lattice::ctl::Host>> {
        let subjects = trellis_lattice::ctl::Subjects::new(&self.lattice);
        let replies = gather(&self.client, subjects.host_ping(), Vec::new(), PING_WINDOW).await?;
        let mut hosts: Vec<trellis_lattice::ctl::Host> = replies
            .iter()
            .filter_map(|reply| {
                serde_json::from_slice::<CtlResponse<trellis_lattice::ctl::Host>>(&reply.payload)
                    .ok()?
                    .response
            })
            .collect();
        hosts.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(hosts)
    }

    /// What runs on one host.
    pub async fn inventory(
        &self,
        host: &str,
    ) -> anyhow::Result<trellis_lattice::ctl::HostInventory> {
        let subject = trellis_lattice::ctl::Subjects::new(&self.lattice).host_get(host);
        let reply: trellis_lattice::ctl::CtlResponse<trellis_lattice::ctl::HostInventory> =
            self.request(subject, Vec::new()).await?;
        if !reply.success {
            bail!(
                "host {host} could not list its inventory: {}",
                reply.message
            );
        }
        reply
            .response
            .ok_or_else(|| anyhow::anyhow!("host {host} sent an empty inventory"))
    }

    pub async fn plugins(&self) -> anyhow::Result<PluginListResponse> {
        self.request(self.subjects.plugin_list(), Vec::new()).await
    }

    /// Every app, asked for a page at a time so that no answer outgrows one NATS message.
    pub async fn list(&self) -> anyhow::Result<Vec<ModelSummary>> {
        let mut apps = Vec::new();
        loop {
            let page = trellis_lattice::api::ListModelsRequest {
                offset: apps.len(),
                limit: Some(LIST_PAGE),
            };
            let body = serde_json::to_vec(&page)?;
            let got: Vec<ModelSummary> = self.request(self.subjects.list(), body).await?;
            let last = got.len() < LIST_PAGE;
            apps.extend(got);
            if last {
                return Ok(apps);
            }
        }
    }

    /// Polls the status until it is deployed (Ok), failed (Err) or `timeout` passes (Err).
    /// `progress` sees every new status.
    ///
    /// Right after a new version is deployed, the controller still reports the previous
    /// version's status until its first pass over the new one; a `deployed` status is trusted
    /// only once it names the deployed version or, from a controller that leaves the version
    /// out, once the plan of the deployed version has nothing left to do.
    pub async fn wait_deployed(
        &self,
        name: &str,
        timeout: Duration,
        mut progress: impl FnMut(&Status),
    ) -> anyhow::Result<Status> {
        let deadline = tokio::time::Instant::now() + timeout;
        let deployed_version = self.deployed_version(name).await;
        let mut last: Option<Status> = None;
        let mut failed_since: Option<tokio::time::Instant> = None;
        loop {
            let resp = self.status(name).await?;
            if let Some(status) = resp.status {
                if last.as_ref() != Some(&status) {
                    progress(&status);
                }
                let current = match (&deployed_version, status.version.as_str()) {
                    (Some(deployed), reported) if !reported.is_empty() => deployed == reported,
                    _ => true,
                };
                match status.info.status_type {
                    StatusType::Deployed
                        if current && self.settled(name, &status, &deployed_version).await =>
                    {
                        return Ok(status)
                    }
                    // A failure the controller is still retrying may clear (a link sent a
                    // moment before its config arrived): only one that lasts is the answer.
                    StatusType::Failed if current => {
                        let since = *failed_since.get_or_insert_with(tokio::time::Instant::now);
                        if since.elapsed() >= FAILURE_SETTLE {
                            return Err(Failure::AppFailed
                                .error(format!("app {name} failed: {}", status.info.message)));
                        }
                    }
                    _ => failed_since = None,
                }
                last = Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                if let (Some(_), Some(status)) = (failed_since, &last) {
                    return Err(Failure::AppFailed
                        .error(format!("app {name} failed: {}", status.info.message)));
                }
                let said = last.map(|s| format!("{:?}: {}", s.info.status_type, s.info.message));
                bail!(
                    "app {name} is not deployed after {timeout:?} (last status {})",
                    said.unwrap_or_else(|| "none".into())
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl ApiClient {
    /// The version the store says is deployed, if the controller tells.
    async fn deployed_version(&self, name: &str) -> Option<String> {
        let versions = self.versions(name).await.ok()?;
        versions
            .versions
            .into_iter()
            .find(|v| v.deployed)
            .map(|v| v.version)
    }

    /// Whether a `deployed` status is about the deployed version: it says so itself, or the
    /// plan of that version finds every scaler deployed. A controller without `plan` (wadm)
    /// is trusted as it is.
    async fn settled(&self, name: &str, status: &Status, version: &Option<String>) -> bool {
        let Some(version) = version else {
            return true;
        };
        if !status.version.is_empty() {
            return true;
        }
        match self.plan(name, Some(version)).await {
            Ok(plan) if plan.result == GetResult::Success => {
                if plan.scalers.is_empty() {
                    plan.commands.is_empty()
                } else {
                    plan.scalers
                        .iter()
                        .all(|s| s.info.status_type == StatusType::Deployed)
                }
            }
            _ => true,
        }
    }
}

/// The answer to `model.history.{name}`: every deploy and undeploy, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryResponse {
    pub result: GetResult,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The version deployed from then on; `None` after an undeploy.
    pub version: Option<String>,
    /// When (RFC 3339).
    pub at: String,
}

/// Reads a manifest file, reporting syntax errors with the file, line and column, and makes
/// relative `file://` images absolute against the manifest's folder (not the working
/// directory), so `trellis app deploy examples/echo/app.yaml` works from anywhere.
pub fn load_manifest_file(path: &Path) -> anyhow::Result<Manifest> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read manifest {}", path.display()))?;
    let mut manifest =
        Manifest::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let folder = std::fs::canonicalize(folder)
        .with_context(|| format!("cannot resolve the folder of {}", path.display()))?;
    for component in &mut manifest.spec.components {
        if let Some(image) = &component.properties.image {
            if let Some(rest) = image.strip_prefix("file://") {
                if !rest.starts_with('/') {
                    let absolute = folder.join(rest);
                    component.properties.image = Some(format!("file://{}", absolute.display()));
                }
            }
        }
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_file_images_resolve_against_the_manifest_folder() {
        let dir = std::env::temp_dir().join(format!("trellis-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("app")).unwrap();
        let path = dir.join("app/app.yaml");
        std::fs::write(
            &path,
            "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: a\n  annotations:\n    version: v1\nspec:\n  components:\n    - name: c\n      type: component\n      properties:\n        image: file://../build/c.wasm\n",
        )
        .unwrap();
        let m = load_manifest_file(&path).unwrap();
        let image = m.spec.components[0].properties.image.clone().unwrap();
        let expected = std::fs::canonicalize(dir.join("app"))
            .unwrap()
            .join("../build/c.wasm");
        assert_eq!(image, format!("file://{}", expected.display()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let dir = std::env::temp_dir().join(format!("trellis-cli-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.yaml");
        std::fs::write(&path, "apiVersion: x\nkind: [oops\n").unwrap();
        let err = load_manifest_file(&path).unwrap_err().to_string();
        assert!(err.contains("bad.yaml") && err.contains("line"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
