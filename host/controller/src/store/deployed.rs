//! What the deployed apps claim (`crate::isolation`), kept from a watch of the manifest bucket,
//! so that the isolation check of a put or deploy reads one index instead of every app's entry.
//! Reading every entry on each check made deploying N apps N² store reads: 1,000 apps took a
//! million, most of the controller's CPU at 10,000 hosts (docs/scale.md).
//!
//! A check first asks the bucket for its newest revision (one request) and waits until the
//! watch has applied it, so it sees every write made before it, by any controller, as reading
//! every entry did. When the watch cannot catch up in time (NATS trouble), the caller falls
//! back to reading every entry.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use tokio::sync::watch;
use trellis_bus::resume;
use trellis_lattice::Manifest;

use super::StoredApp;
use crate::isolation::{ClaimIndex, Conflict};

/// How long a check waits for the watch to apply the bucket's newest revision. It takes
/// milliseconds; past this, something is wrong with the watch, and reading every entry is
/// the safe answer.
pub const CATCH_UP: Duration = Duration::from_secs(2);

/// The claims of the deployed apps, and the bucket revision they are as of.
pub(crate) struct DeployedClaims {
    index: Mutex<ClaimIndex>,
    applied: watch::Sender<u64>,
    follower: tokio::task::JoinHandle<()>,
}

impl Drop for DeployedClaims {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl DeployedClaims {
    /// Starts following `store` from its current entries on.
    pub async fn follow(
        client: &async_nats::Client,
        store: &kv::Store,
    ) -> anyhow::Result<Arc<Self>> {
        let first = store.watch_with_history(">").await?;
        let entries = resume::items(resume::kv_watch(client, store.clone(), Some(first), true));
        Ok(Arc::new_cyclic(|me: &Weak<Self>| Self {
            index: Mutex::new(ClaimIndex::default()),
            applied: watch::channel(0).0,
            follower: tokio::spawn(apply_entries(me.clone(), entries)),
        }))
    }

    fn apply(&self, entry: &kv::Entry) {
        let app = match entry.operation {
            // Unreadable: the store's own reads report it; it claims nothing it could run.
            kv::Operation::Put => serde_json::from_slice::<StoredApp>(&entry.value).ok(),
            kv::Operation::Delete | kv::Operation::Purge => None,
        };
        self.index.lock().unwrap_or_else(|e| e.into_inner()).set(
            &entry.key,
            app.as_ref().and_then(StoredApp::deployed_manifest).as_ref(),
        );
        self.applied
            .send_modify(|applied| *applied = (*applied).max(entry.revision));
    }

    /// Checks `manifest` against the deployed apps as of bucket revision `latest`; `None`
    /// when the watch did not get there within [`CATCH_UP`].
    pub async fn check(&self, manifest: &Manifest, latest: u64) -> Option<Result<(), Conflict>> {
        let mut applied = self.applied.subscribe();
        let caught_up = applied.wait_for(|&revision| revision >= latest);
        if !matches!(tokio::time::timeout(CATCH_UP, caught_up).await, Ok(Ok(_))) {
            return None;
        }
        Some(
            self.index
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .check(manifest),
        )
    }
}

async fn apply_entries(
    claims: Weak<DeployedClaims>,
    mut entries: futures::stream::BoxStream<'static, kv::Entry>,
) {
    while let Some(entry) = entries.next().await {
        let Some(claims) = claims.upgrade() else {
            return;
        };
        claims.apply(&entry);
    }
}
