//! Apps' statuses: aggregated from what their scalers reported in a pass (with the executor's
//! commands in flight and failures taken into account), published on
//! `wadm.status.{lattice}.{app}` when they change, and kept in the lattice's status bucket so
//! that every controller answers `status` and `list` alike.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_nats::jetstream::kv;
use tokio::sync::mpsc;
use trellis_lattice::api::{ScalerStatus, Status, StatusInfo, StatusType};

use super::planning::Planned;
use crate::commands::Origin;
use crate::executor::Executor;

/// The KV bucket where the owner of each app keeps its status, so that every controller of the
/// lattice answers `status` and `list` alike.
pub fn status_bucket(lattice: &str) -> String {
    format!("TRELLIS_STATUS_{lattice}")
}

/// Statuses of the apps of a lattice, shared with the API server.
pub type Statuses = Arc<Mutex<HashMap<String, Status>>>;

/// Where the loop's statuses go: the map the API server answers from, the status subject and
/// the status bucket.
pub(crate) struct StatusPublisher {
    lattice: String,
    client: async_nats::Client,
    statuses: Statuses,
    /// Status writes to the status bucket, done in order by a task of their own so a pass that
    /// changes a thousand statuses does not wait for a thousand KV round trips.
    writes: mpsc::UnboundedSender<(String, bytes::Bytes)>,
}

impl StatusPublisher {
    pub fn new(
        lattice: &str,
        client: async_nats::Client,
        statuses: Statuses,
        status_kv: kv::Store,
    ) -> Self {
        Self {
            lattice: lattice.to_string(),
            client,
            statuses,
            writes: spawn_status_writer(lattice.to_string(), status_kv),
        }
    }

    /// Takes a status from the status bucket (the owner of the app wrote it, maybe another
    /// controller).
    pub fn on_entry(&self, entry: kv::Entry) {
        let mut statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
        match entry.operation {
            kv::Operation::Put => {
                if let Ok(status) = serde_json::from_slice::<Status>(&entry.value) {
                    statuses.insert(entry.key, status);
                }
            }
            _ => {
                statuses.remove(&entry.key);
            }
        }
    }

    /// An app left the store or was undeployed: `status` says so at once, whoever owns it.
    pub fn note_undeployed(&self, app: String) {
        let mut statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
        statuses.insert(
            app,
            Status::new(StatusInfo::new(StatusType::Undeployed, ""), Vec::new()),
        );
    }

    /// Publishes an app's status when it changed.
    pub async fn publish(&self, app: &str, status: Status) {
        let changed = {
            let mut statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
            let changed = statuses.get(app) != Some(&status);
            if changed {
                statuses.insert(app.to_string(), status.clone());
            }
            changed
        };
        if changed {
            self.publish_always(app, status).await;
        }
    }

    pub async fn publish_always(&self, app: &str, status: Status) {
        tracing::info!(lattice = %self.lattice, app, status = ?status.info.status_type, message = %status.info.message, "app status");
        self.statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(app.to_string(), status.clone());
        let subject = trellis_lattice::api::Subjects::new(&self.lattice).status_updates(app);
        if let Ok(body) = serde_json::to_vec(&status) {
            let body: bytes::Bytes = body.into();
            let _ = self.client.publish(subject, body.clone()).await;
            let _ = self.writes.send((app.to_string(), body));
        }
    }
}

/// Writes statuses to the status bucket in the order they come.
fn spawn_status_writer(
    lattice: String,
    status_kv: kv::Store,
) -> mpsc::UnboundedSender<(String, bytes::Bytes)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, bytes::Bytes)>();
    tokio::spawn(async move {
        while let Some((app, body)) = rx.recv().await {
            if let Err(e) = status_kv.put(&app, body).await {
                tracing::warn!(lattice = %lattice, app, "cannot store the app's status: {e}");
            }
        }
    });
    tx
}

/// Each app's status from what its scalers reported in a pass (their commands already handed
/// to `executor`); `version_of` names the deployed version each status is about.
pub(crate) fn app_statuses(
    results: Vec<(String, Vec<Planned>)>,
    executor: &Executor,
    version_of: impl Fn(&str) -> Option<String>,
) -> Vec<(String, Status)> {
    // Plugins saw commands in flight as done; a scaler is deployed only once the lattice
    // shows them.
    let mut in_flight: HashMap<&Origin, usize> = HashMap::new();
    for origin in executor.in_flight_origins() {
        *in_flight.entry(origin).or_default() += 1;
    }
    let mut published = Vec::with_capacity(results.len());
    for (app, scalers) in results {
        let mut scaler_statuses = Vec::with_capacity(scalers.len());
        for planned in scalers {
            let pending = in_flight.get(&planned.origin).copied().unwrap_or(0);
            let waiting = executor.waiting_of(&planned.origin);
            let info = match (executor.failure_of(&planned.origin), waiting) {
                (Some(failure), _) => StatusInfo::new(StatusType::Failed, failure.reason.clone()),
                (None, Some(reason)) if planned.status.status_type != StatusType::Failed => {
                    StatusInfo::new(StatusType::Reconciling, reason)
                }
                (None, _) if pending > 0 && planned.status.status_type == StatusType::Deployed => {
                    StatusInfo::new(
                        StatusType::Reconciling,
                        format!("{pending} command(s) not carried out yet"),
                    )
                }
                (None, _) => planned.status,
            };
            scaler_statuses.push(ScalerStatus {
                id: planned.status_id,
                kind: planned.trait_type,
                name: planned.component,
                info,
            });
        }
        let mut status = Status::aggregate(scaler_statuses);
        // Which version this status is about: a client that just deployed another version
        // must not take this one's "deployed" for its own.
        if let Some(version) = version_of(&app) {
            status.version = version;
        }
        published.push((app, status));
    }
    published
}
