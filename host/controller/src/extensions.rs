//! The API extensions on trellis's own subjects (wadm's stay untouched):
//! `trellis.api.{lattice}.model.plan.{name}`, `trellis.api.{lattice}.model.rollback.{name}` and
//! `trellis.api.{lattice}.hosts.get`, `trellis.api.{lattice}.snapshot.get` and
//! `trellis.api.{lattice}.rollout.{get,promote,abort}.{name}`.

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use trellis_lattice::api::{
    DeployModelResponse, DeployResult, GetResult, HostsRequest, HostsResponse, PlanRequest,
    PlanResponse, RolloutAction, SnapshotResponse, Subjects,
};

use crate::bodies::parse_body;
use crate::notify::ManifestEvents;
use crate::reconciler::Query;
use trellis_lattice::ErrorCode;

use crate::store::ManifestStore;

pub struct ExtensionServer {
    pub lattice: String,
    pub client: async_nats::Client,
    pub store: ManifestStore,
    /// Plans and host reports are made by the reconcile loop, which holds the lattice state.
    pub queries: mpsc::Sender<Query>,
    /// A rollback is a deploy: it publishes `manifest_published` as one.
    pub events: ManifestEvents,
}

impl ExtensionServer {
    /// Listens on the extension subjects, in the API's queue group: with several controllers,
    /// each request is answered once.
    pub async fn subscribe(
        &self,
    ) -> anyhow::Result<futures::stream::SelectAll<async_nats::Subscriber>> {
        let mut subscriptions = Vec::new();
        for subject in Subjects::new(&self.lattice).extension_wildcards() {
            subscriptions.push(
                self.client
                    .queue_subscribe(subject, "trellis-api".into())
                    .await?,
            );
        }
        Ok(futures::stream::select_all(subscriptions))
    }

    pub async fn run(
        self,
        mut requests: futures::stream::SelectAll<async_nats::Subscriber>,
    ) -> anyhow::Result<()> {
        let subjects = Subjects::new(&self.lattice);
        let (plan_prefix, rollback_prefix) = (subjects.plan(""), subjects.rollback(""));
        let hosts_subject = subjects.hosts();
        let snapshot_subject = subjects.snapshot();
        let rollout_prefix = subjects.rollout_prefix();
        while let Some(msg) = requests.next().await {
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let subject = msg.subject.as_str();
            let body = if subject == hosts_subject {
                serde_json::to_vec(&self.hosts(&msg.payload).await)
            } else if subject == snapshot_subject {
                serde_json::to_vec(&self.snapshot().await)
            } else if let Some(name) = subject.strip_prefix(&plan_prefix) {
                serde_json::to_vec(&self.plan(name, &msg.payload).await)
            } else if let Some(name) = subject.strip_prefix(&rollback_prefix) {
                serde_json::to_vec(&self.rollback(name).await)
            } else if let Some((action, name)) = subject
                .strip_prefix(&rollout_prefix)
                .and_then(|tail| tail.split_once('.'))
                .and_then(|(action, name)| Some((RolloutAction::parse(action)?, name)))
            {
                let answer = crate::rollout::api::answer(&self.store, action, name, &msg.payload);
                serde_json::to_vec(&answer.await)
            } else {
                continue;
            };
            if let Err(e) = self
                .client
                .publish(reply, body.unwrap_or_default().into())
                .await
            {
                tracing::warn!(lattice = %self.lattice, "cannot answer API request: {e}");
            }
        }
        Ok(())
    }

    async fn hosts(&self, payload: &[u8]) -> HostsResponse {
        let request: HostsRequest = match parse_body("hosts.get", payload) {
            Ok(request) => request,
            Err(message) => {
                return HostsResponse {
                    message,
                    ..HostsResponse::default()
                }
            }
        };
        let (reply, answer) = oneshot::channel();
        if self
            .queries
            .send(Query::Hosts { request, reply })
            .await
            .is_err()
        {
            return HostsResponse {
                message: "the reconcile loop of this lattice is not running".into(),
                ..HostsResponse::default()
            };
        }
        answer.await.unwrap_or_else(|_| HostsResponse {
            message: "the reconcile loop dropped the hosts request".into(),
            ..HostsResponse::default()
        })
    }

    async fn snapshot(&self) -> SnapshotResponse {
        let failed = |message: &str| SnapshotResponse {
            message: message.into(),
            snapshot: None,
        };
        let (reply, answer) = oneshot::channel();
        if self.queries.send(Query::Snapshot { reply }).await.is_err() {
            return failed("the reconcile loop of this lattice is not running");
        }
        match answer.await.map(serde_json::to_value) {
            Ok(Ok(doc)) => SnapshotResponse {
                message: String::new(),
                snapshot: Some(doc),
            },
            Ok(Err(e)) => failed(&format!("cannot write the snapshot: {e}")),
            Err(_) => failed("the reconcile loop dropped the snapshot request"),
        }
    }

    async fn plan(&self, name: &str, payload: &[u8]) -> PlanResponse {
        let request: PlanRequest = match parse_body("model.plan", payload) {
            Ok(request) => request,
            Err(message) => {
                return PlanResponse {
                    result: GetResult::Error,
                    code: Some(ErrorCode::Invalid),
                    message,
                    name: name.to_string(),
                    version: String::new(),
                    commands: Vec::new(),
                    scalers: Vec::new(),
                }
            }
        };
        let failed = |result, code, message: String| PlanResponse {
            result,
            code: Some(code),
            message,
            name: name.to_string(),
            version: request.version.clone().unwrap_or_default(),
            commands: Vec::new(),
            scalers: Vec::new(),
        };
        let app = match self.store.get(name).await {
            Ok(Some((app, _))) => app,
            Ok(None) => {
                return failed(
                    GetResult::NotFound,
                    ErrorCode::NotFound,
                    format!("app {name} not found; put its manifest first"),
                )
            }
            Err(e) => return failed(GetResult::Error, e.code(), e.to_string()),
        };
        let stored = match &request.version {
            Some(v) => app.version(v),
            None => app.latest(),
        };
        let Some(stored) = stored else {
            return failed(
                GetResult::NotFound,
                ErrorCode::NotFound,
                format!(
                    "app {name} has no version {}; `model.versions` lists them",
                    request.version.clone().unwrap_or_default()
                ),
            );
        };
        let (tx, rx) = oneshot::channel();
        let query = Query::Plan {
            manifest: stored.manifest.clone(),
            reply: tx,
        };
        if self.queries.send(query).await.is_err() {
            return failed(
                GetResult::Error,
                ErrorCode::Unavailable,
                "the reconcile loop of this lattice is not running".into(),
            );
        }
        rx.await.unwrap_or_else(|_| {
            failed(
                GetResult::Error,
                ErrorCode::Unavailable,
                "the reconcile loop dropped the plan request".into(),
            )
        })
    }

    async fn rollback(&self, name: &str) -> DeployModelResponse {
        let (result, message, version) = match self.store.rollback(name).await {
            Ok((version, manifest)) => {
                self.events.published(&manifest).await;
                (
                    DeployResult::Acknowledged,
                    format!("rolling app {name} back to version {version}"),
                    Some(version),
                )
            }
            Err(e) => {
                let code = e.code();
                let result = match code {
                    ErrorCode::NotFound => DeployResult::NotFound,
                    _ => DeployResult::Error,
                };
                return DeployModelResponse {
                    result,
                    code: Some(code),
                    message: e.to_string(),
                    name: name.to_string(),
                    version: None,
                };
            }
        };
        DeployModelResponse {
            result,
            code: None,
            message,
            name: name.to_string(),
            version,
        }
    }
}
