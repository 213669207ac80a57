//! The controller API on NATS: wadm's `wadm.api.{lattice}.model.*` subjects (under another
//! prefix if the controller is given one) and JSON shapes, so `wadm-client` and `wash app` work
//! against trellis unchanged. Listing is in [`crate::listing`]; the events deploys and undeploys
//! publish, in [`crate::notify`].

use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;
use trellis_lattice::api::*;
use trellis_lattice::{ErrorCode, Manifest};
use trellis_runtime::Runtime;

use crate::bodies::{fit, parse_body, NoBody};
use crate::notify::ManifestEvents;
use crate::reconciler::Statuses;
use crate::store::{ManifestStore, StoreError};
use crate::validate;
use crate::validations::Validations;

pub struct ApiServer {
    pub lattice: String,
    /// The API's subjects, under the controller's API prefix.
    pub subjects: Subjects,
    pub client: async_nats::Client,
    pub store: ManifestStore,
    pub statuses: Statuses,
    pub runtime: Arc<Runtime>,
    pub validations: Validations,
    pub events: ManifestEvents,
}

/// The answer to `model.history.{name}` (a trellis extension).
#[derive(Debug, Serialize)]
struct HistoryResponse {
    result: GetResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<ErrorCode>,
    message: String,
    history: Vec<crate::store::HistoryEntry>,
}

/// What `trellis plugin list` shows: the plugins in service, their statistics, and the files
/// that failed to load.
pub fn plugin_list(runtime: &Runtime) -> PluginListResponse {
    let set = runtime.plugins();
    PluginListResponse {
        plugin_dir: runtime.plugin_dir().display().to_string(),
        plugins: set
            .summaries()
            .into_iter()
            .map(|p| PluginEntry {
                name: p.name,
                version: p.version,
                kind: p.kind.to_string(),
                file: p.file.display().to_string(),
                sha256: p.sha256,
                trait_types: p.trait_types,
                description: p.description,
                contract: p.contract.to_string(),
                calls: p.calls,
                failures: p.failures,
                p50_us: p.p50_us,
                p99_us: p.p99_us,
            })
            .collect(),
        problems: set
            .problems
            .iter()
            .map(|(file, e)| PluginProblem {
                file: file.display().to_string(),
                error: e.to_string(),
            })
            .collect(),
    }
}

impl ApiServer {
    /// Answers `trellis.api.{lattice}.model.validate`: the findings about a manifest, without
    /// storing it.
    pub async fn serve_validate(
        client: async_nats::Client,
        mut requests: async_nats::Subscriber,
        runtime: Arc<Runtime>,
        validations: Validations,
    ) -> anyhow::Result<()> {
        while let Some(msg) = requests.next().await {
            let Some(reply) = msg.reply else { continue };
            let (client, runtime, validations) =
                (client.clone(), Arc::clone(&runtime), validations.clone());
            // Each validation in its own task: they wait for a slot, not for each other.
            tokio::spawn(async move {
                let payload = msg.payload;
                let found = validations
                    .run(&runtime, move |runtime| {
                        let text = String::from_utf8_lossy(&payload);
                        validate::validate_text(runtime, &text)
                    })
                    .await;
                let response = ValidateResponse {
                    valid: !validate::has_errors(&found),
                    diagnostics: found,
                };
                let body = serde_json::to_vec(&response).unwrap_or_default();
                let _ = client.publish(reply, fit(&client, body).into()).await;
            });
        }
        Ok(())
    }

    /// Answers `trellis.api.{lattice}.plugin.list`.
    pub async fn serve_plugins(
        client: async_nats::Client,
        mut requests: async_nats::Subscriber,
        runtime: Arc<Runtime>,
    ) -> anyhow::Result<()> {
        while let Some(msg) = requests.next().await {
            let Some(reply) = msg.reply else { continue };
            let body = serde_json::to_vec(&plugin_list(&runtime)).unwrap_or_default();
            let _ = client.publish(reply, body.into()).await;
        }
        Ok(())
    }

    /// Listens on the API subjects. A queue group: with several controllers, each request is
    /// answered once.
    pub async fn subscribe(&self) -> anyhow::Result<async_nats::Subscriber> {
        Ok(self
            .client
            .queue_subscribe(self.subjects.model_wildcard(), "trellis-api".into())
            .await?)
    }

    pub async fn run(self, mut requests: async_nats::Subscriber) -> anyhow::Result<()> {
        let prefix = format!("{}.", self.subjects.model_prefix());
        // Requests are answered concurrently: each is a few KV round trips, and a burst of
        // deploys must not queue behind one another (the store's CAS keeps them consistent).
        let this = Arc::new(self);
        while let Some(msg) = requests.next().await {
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let (this, prefix) = (Arc::clone(&this), prefix.clone());
            tokio::spawn(async move {
                let tail = msg
                    .subject
                    .as_str()
                    .strip_prefix(&prefix)
                    .unwrap_or_default();
                let body = match Operation::parse(tail) {
                    Some(op) => {
                        tracing::debug!(lattice = %this.lattice, ?op, "api request");
                        this.handle(op, &msg.payload).await
                    }
                    None => serde_json::json!({
                        "result": "error",
                        "message": format!("unknown API operation `{tail}`"),
                    }),
                };
                let payload = fit(&this.client, serde_json::to_vec(&body).unwrap_or_default());
                if let Err(e) = this.client.publish(reply, payload.into()).await {
                    tracing::warn!(lattice = %this.lattice, "cannot answer API request: {e}");
                }
            });
        }
        Ok(())
    }

    async fn handle(&self, op: Operation, payload: &[u8]) -> serde_json::Value {
        let invalid = |message: String| {
            serde_json::json!({
                "result": "error",
                "code": ErrorCode::Invalid,
                "message": message,
            })
        };
        // Requests that take no body refuse one, as the others refuse unknown fields: a body
        // sent there was meant for something else.
        let bodiless = match &op {
            Operation::Versions(_) => Some("model.versions"),
            Operation::Status(_) => Some("model.status"),
            Operation::History(_) => Some("model.history"),
            _ => None,
        };
        if let Some(what) = bodiless {
            if let Err(message) = parse_body::<NoBody>(what, payload) {
                return invalid(message);
            }
        }
        match op {
            Operation::Put => to_value(self.put(payload).await),
            Operation::List => match parse_body::<ListModelsRequest>("model.list", payload) {
                Ok(page) => to_value(self.list(page).await),
                Err(message) => invalid(message),
            },
            // wadm ignores the body here; trellis reads the same page as `model.list` does.
            Operation::GetAll => match parse_body::<ListModelsRequest>("model.get", payload) {
                Ok(page) => to_value(self.get_all(page).await),
                Err(message) => invalid(message),
            },
            Operation::Get(name) => to_value(self.get(&name, payload).await),
            Operation::Versions(name) => to_value(self.versions(&name).await),
            Operation::Del(name) => to_value(self.delete(&name, payload).await),
            Operation::Deploy(name) => to_value(self.deploy(&name, payload).await),
            Operation::Undeploy(name) => to_value(self.undeploy(&name, payload).await),
            Operation::Status(name) => to_value(self.status(&name).await),
            Operation::History(name) => to_value(self.history(&name).await),
        }
    }

    async fn put(&self, payload: &[u8]) -> PutModelResponse {
        let error = |code, message: String| PutModelResponse {
            result: PutResult::Error,
            code: Some(code),
            total_versions: 0,
            current_version: String::new(),
            message,
            name: String::new(),
            pruned: Vec::new(),
        };
        let text = match std::str::from_utf8(payload) {
            Ok(t) => t,
            Err(_) => return error(ErrorCode::Invalid, "manifest is not UTF-8 text".into()),
        };
        let mut manifest = match Manifest::parse(text) {
            Ok(m) => m,
            Err(e @ trellis_lattice::ManifestError::OverLimit(_)) => {
                return error(ErrorCode::TooLarge, e.to_string())
            }
            Err(e) => return error(ErrorCode::Invalid, e.to_string()),
        };
        if manifest.version().is_empty() {
            // As wadm does: a manifest without a version gets a unique one.
            let version = chrono::Utc::now().format("v%Y%m%d%H%M%S%3f").to_string();
            manifest.metadata.annotations.insert(
                trellis_lattice::manifest::VERSION_ANNOTATION.into(),
                version,
            );
        }
        let checked = manifest.clone();
        let found = self
            .validations
            .run(&self.runtime, move |runtime| {
                validate::validate(runtime, &checked)
            })
            .await;
        if validate::has_errors(&found) {
            return error(ErrorCode::Invalid, validate::describe_errors(&found));
        }
        let name = manifest.name().to_string();
        let version = manifest.version().to_string();
        match self.store.put(manifest).await {
            Ok(outcome) => PutModelResponse {
                code: None,
                result: if outcome.created {
                    PutResult::Created
                } else {
                    PutResult::NewVersion
                },
                total_versions: outcome.total_versions,
                current_version: version.clone(),
                message: if outcome.pruned.is_empty() {
                    format!("put app {name} version {version}")
                } else {
                    format!(
                        "put app {name} version {version}; pruned the oldest version(s) {} to keep within the store's bounds",
                        outcome.pruned.join(", ")
                    )
                },
                pruned: outcome.pruned,
                name,
            },
            Err(e) => PutModelResponse {
                name,
                ..error(e.code(), e.to_string())
            },
        }
    }

    /// The status of app `name` as `model.status` and the lists report it.
    pub(crate) fn current_status(&self, name: &str, deployed: Option<&str>) -> Status {
        let Some(deployed) = deployed else {
            return Status::new(StatusInfo::new(StatusType::Undeployed, ""), Vec::new());
        };
        let statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
        let current = statuses
            .get(name)
            .filter(|s| s.version.is_empty() || s.version == deployed);
        if current.is_none() && statuses.contains_key(name) {
            // The last status is about the version deployed before: the new one has not been
            // reconciled yet.
            let mut status = Status::new(
                StatusInfo::new(
                    StatusType::Reconciling,
                    format!("version {deployed} is waiting for its first reconcile pass"),
                ),
                Vec::new(),
            );
            status.version = deployed.to_string();
            return status;
        }
        current.cloned().unwrap_or_else(|| {
            Status::new(
                StatusInfo::new(
                    StatusType::Reconciling,
                    "waiting for the first reconcile pass",
                ),
                Vec::new(),
            )
        })
    }

    async fn get(&self, name: &str, payload: &[u8]) -> GetModelResponse {
        let request: GetModelRequest = match parse_body("model.get", payload) {
            Ok(request) => request,
            Err(message) => {
                return GetModelResponse {
                    result: GetResult::Error,
                    code: Some(ErrorCode::Invalid),
                    message,
                    manifest: None,
                }
            }
        };
        match self.store.get(name).await {
            Ok(Some((app, _))) => {
                let found = match &request.version {
                    Some(v) => app.version(v),
                    None => app.latest(),
                };
                match found {
                    Some(v) => GetModelResponse {
                        result: GetResult::Success,
                        code: None,
                        message: String::new(),
                        manifest: Some(v.manifest.clone()),
                    },
                    None => GetModelResponse {
                        result: GetResult::NotFound,
                        code: Some(ErrorCode::NotFound),
                        message: format!(
                            "app {name} has no version {}",
                            request.version.unwrap_or_default()
                        ),
                        manifest: None,
                    },
                }
            }
            Ok(None) => GetModelResponse {
                result: GetResult::NotFound,
                code: Some(ErrorCode::NotFound),
                message: format!("app {name} not found"),
                manifest: None,
            },
            Err(e) => GetModelResponse {
                result: GetResult::Error,
                code: Some(e.code()),
                message: e.to_string(),
                manifest: None,
            },
        }
    }

    async fn versions(&self, name: &str) -> VersionResponse {
        match self.store.get(name).await {
            Ok(Some((app, _))) => VersionResponse {
                result: GetResult::Success,
                code: None,
                message: String::new(),
                versions: app
                    .versions
                    .iter()
                    .map(|v| VersionInfo {
                        version: v.version.clone(),
                        deployed: app.deployed.as_deref() == Some(v.version.as_str()),
                    })
                    .collect(),
            },
            Ok(None) => VersionResponse {
                result: GetResult::NotFound,
                code: Some(ErrorCode::NotFound),
                message: format!("app {name} not found"),
                versions: Vec::new(),
            },
            Err(e) => VersionResponse {
                result: GetResult::Error,
                code: Some(e.code()),
                message: e.to_string(),
                versions: Vec::new(),
            },
        }
    }

    async fn delete(&self, name: &str, payload: &[u8]) -> DeleteModelResponse {
        let request: DeleteModelRequest = match parse_body("model.del", payload) {
            Ok(request) => request,
            Err(message) => {
                return DeleteModelResponse {
                    result: DeleteResult::Error,
                    code: Some(ErrorCode::Invalid),
                    message,
                    undeploy: false,
                }
            }
        };
        match self.store.delete(name, request.version.as_deref()).await {
            Ok(undeploy) => {
                // As wadm: a whole app deleted is unpublished, deployed or not.
                if undeploy || request.version.is_none() {
                    self.events.unpublished(name).await;
                }
                DeleteModelResponse {
                    result: DeleteResult::Deleted,
                    code: None,
                    message: match &request.version {
                        Some(v) => format!("deleted version {v} of app {name}"),
                        None => format!("deleted app {name}"),
                    },
                    undeploy,
                }
            }
            Err(e @ (StoreError::NotFound(_) | StoreError::VersionNotFound { .. })) => {
                // As wadm: an app already gone is unpublished again, in case the event of its
                // deletion was lost. Not so for a missing version of an app that is still
                // there (wadm sends it then too, announcing a deployed app gone).
                if matches!(e, StoreError::NotFound(_)) {
                    self.events.unpublished(name).await;
                }
                DeleteModelResponse {
                    result: DeleteResult::Noop,
                    code: None,
                    message: format!("app {name} has nothing to delete"),
                    undeploy: false,
                }
            }
            Err(e) => DeleteModelResponse {
                result: DeleteResult::Error,
                code: Some(e.code()),
                message: e.to_string(),
                undeploy: false,
            },
        }
    }

    async fn deploy(&self, name: &str, payload: &[u8]) -> DeployModelResponse {
        let request: DeployModelRequest = match parse_body("model.deploy", payload) {
            Ok(request) => request,
            Err(message) => return refused(name, message),
        };
        match self.store.deploy(name, request.version.as_deref()).await {
            Ok((version, manifest)) => {
                self.events.published(&manifest).await;
                let rolling = match self.store.get(name).await {
                    Ok(Some((app, _))) => app
                        .active_rollout()
                        .filter(|r| r.to == version)
                        .map(|r| (r.from.clone(), r.strategy.clone())),
                    _ => None,
                };
                let message = match rolling {
                    Some((from, strategy)) => format!(
                        "rolling app {name} out from version {from} to {version} ({strategy}); follow it with `trellis app rollout status {name} --watch`"
                    ),
                    None => format!("deploying app {name} version {version}"),
                };
                DeployModelResponse {
                    result: DeployResult::Acknowledged,
                    code: None,
                    message,
                    name: name.into(),
                    version: Some(version),
                }
            }
            Err(e @ (StoreError::NotFound(_) | StoreError::VersionNotFound { .. })) => {
                DeployModelResponse {
                    result: DeployResult::NotFound,
                    code: Some(ErrorCode::NotFound),
                    message: e.to_string(),
                    name: name.into(),
                    version: request.version,
                }
            }
            Err(e) => DeployModelResponse {
                result: DeployResult::Error,
                code: Some(e.code()),
                message: e.to_string(),
                name: name.into(),
                version: request.version,
            },
        }
    }

    async fn undeploy(&self, name: &str, payload: &[u8]) -> DeployModelResponse {
        let request: UndeployModelRequest = match parse_body("model.undeploy", payload) {
            Ok(request) => request,
            Err(message) => return refused(name, message),
        };
        match self.store.undeploy(name, request.non_destructive).await {
            Ok(()) => {
                // As wadm: also when it was not deployed, in case an earlier event was lost.
                self.events.unpublished(name).await;
                DeployModelResponse {
                    result: DeployResult::Acknowledged,
                    code: None,
                    message: if request.non_destructive {
                        format!("undeploying app {name}; what it runs stays in place, unmanaged")
                    } else {
                        format!("undeploying app {name}")
                    },
                    name: name.into(),
                    version: None,
                }
            }
            Err(e @ StoreError::NotFound(_)) => DeployModelResponse {
                result: DeployResult::NotFound,
                code: Some(ErrorCode::NotFound),
                message: e.to_string(),
                name: name.into(),
                version: None,
            },
            Err(e) => DeployModelResponse {
                result: DeployResult::Error,
                code: Some(e.code()),
                message: e.to_string(),
                name: name.into(),
                version: None,
            },
        }
    }

    async fn status(&self, name: &str) -> StatusResponse {
        match self.store.get(name).await {
            Ok(Some((app, _))) => StatusResponse {
                result: StatusResult::Ok,
                code: None,
                message: String::new(),
                status: Some(self.current_status(name, app.deployed.as_deref())),
            },
            Ok(None) => StatusResponse {
                result: StatusResult::NotFound,
                code: Some(ErrorCode::NotFound),
                message: format!("app {name} not found"),
                status: None,
            },
            Err(e) => StatusResponse {
                result: StatusResult::Error,
                code: Some(e.code()),
                message: e.to_string(),
                status: None,
            },
        }
    }

    async fn history(&self, name: &str) -> HistoryResponse {
        match self.store.get(name).await {
            Ok(Some((app, _))) => HistoryResponse {
                result: GetResult::Success,
                code: None,
                message: String::new(),
                history: app.history,
            },
            Ok(None) => HistoryResponse {
                result: GetResult::NotFound,
                code: Some(ErrorCode::NotFound),
                message: format!("app {name} not found"),
                history: Vec::new(),
            },
            Err(e) => HistoryResponse {
                result: GetResult::Error,
                code: Some(e.code()),
                message: e.to_string(),
                history: Vec::new(),
            },
        }
    }
}

/// A deploy or undeploy refused for its body.
fn refused(name: &str, message: String) -> DeployModelResponse {
    DeployModelResponse {
        result: DeployResult::Error,
        code: Some(ErrorCode::Invalid),
        message,
        name: name.into(),
        version: None,
    }
}

fn to_value(v: impl Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}
