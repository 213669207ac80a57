//! The manifest store: one JetStream KV entry per app holding every version, the deployed
//! version and the deployment history. Every write is a compare-and-swap on the entry's
//! revision, so a put racing a delete ends with one winner and one conflict error, never with
//! a half-written app.
//!
//! Puts and deploys are also checked against the other deployed apps ([`crate::isolation`]):
//! an app may not claim another's component ids, configs or buckets.
//!
//! The entry is bounded ([`StoreSettings`]): at most `max_versions` versions and
//! `max_history` history entries are kept, the oldest pruned first (never the deployed
//! version; the put says what went), and a write that would still not fit in one NATS message
//! prunes older versions or is refused with the sizes, before anything is stored.

use std::sync::Arc;

use async_nats::jetstream::{self, kv};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use trellis_lattice::api::Rollout;
use trellis_lattice::limits::{DEFAULT_MAX_HISTORY, DEFAULT_MAX_VERSIONS};
use trellis_lattice::{ErrorCode, Manifest};

use crate::isolation;

mod deployed;
mod rollouts;

use deployed::DeployedClaims;

/// The KV bucket of a lattice's manifests.
pub fn bucket(lattice: &str) -> String {
    format!("TRELLIS_MANIFESTS_{lattice}")
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("app `{0}` not found")]
    NotFound(String),
    #[error("app `{app}` has no version `{version}`")]
    VersionNotFound { app: String, version: String },
    #[error("app `{app}` already has a version `{version}`; change `metadata.annotations.version` to put a new one")]
    VersionExists { app: String, version: String },
    #[error("app `{0}` was changed by someone else at the same time; try again")]
    Conflict(String),
    #[error("app `{0}` has no earlier deployed version to roll back to; see its history (model.history)")]
    NoRollback(String),
    #[error("app `{app}` is rolling out from {from} to {to}; wait for it, or end it first with `trellis app rollout promote|abort {app}`")]
    RolloutUnderWay {
        app: String,
        from: String,
        to: String,
    },
    #[error(
        "app `{0}` has no rollout under way; `trellis app rollout status {0}` shows its last one"
    )]
    NoRollout(String),
    #[error("app `{app}`'s rollout is already {state}: there is nothing left to {action}")]
    RolloutEnding {
        app: String,
        state: trellis_lattice::api::RolloutState,
        action: &'static str,
    },
    #[error(transparent)]
    Isolation(#[from] isolation::Conflict),
    #[error("app `{app}` would take {bytes} bytes in the store, over the {max} bytes one entry may hold even with only its deployed and newest versions kept; put a smaller manifest, or raise the NATS server's max_payload")]
    TooLarge {
        app: String,
        bytes: usize,
        max: usize,
    },
    #[error("the store's entry for app `{app}` is not an app trellis wrote ({why}); delete it with `nats kv del` on the manifest bucket, or put the app again after deleting it")]
    Unreadable { app: String, why: String },
    #[error("manifest store: {0}")]
    Nats(String),
}

/// What the store keeps per app, and how its bucket is kept.
#[derive(Debug, Clone, Copy)]
pub struct StoreSettings {
    /// Versions kept per app; older ones that are not deployed are pruned.
    pub max_versions: usize,
    /// History entries kept per app; older ones are pruned.
    pub max_history: usize,
    /// Replicas and revisions of the controller's buckets.
    pub durability: trellis_bus::Durability,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            max_versions: DEFAULT_MAX_VERSIONS,
            max_history: DEFAULT_MAX_HISTORY,
            durability: trellis_bus::Durability::default(),
        }
    }
}

impl StoreError {
    /// What the error means for a client, on the wire beside its message.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::NotFound(_)
            | StoreError::VersionNotFound { .. }
            | StoreError::NoRollback(_)
            | StoreError::NoRollout(_) => ErrorCode::NotFound,
            StoreError::RolloutUnderWay { .. } | StoreError::RolloutEnding { .. } => {
                ErrorCode::Conflict
            }
            StoreError::VersionExists { .. } => ErrorCode::Exists,
            StoreError::Conflict(_) | StoreError::Isolation(_) => ErrorCode::Conflict,
            StoreError::TooLarge { .. } => ErrorCode::TooLarge,
            StoreError::Unreadable { .. } => ErrorCode::Unavailable,
            StoreError::Nats(_) => ErrorCode::Unavailable,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredVersion {
    pub version: String,
    pub manifest: Manifest,
    pub put_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The version deployed from this moment on; `None` after an undeploy.
    pub version: Option<String>,
    pub at: DateTime<Utc>,
    /// An undeploy that left what the app ran in place.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub non_destructive: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoredApp {
    pub versions: Vec<StoredVersion>,
    #[serde(default)]
    pub deployed: Option<String>,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    /// The app's current or last rollout (`crate::rollout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// The deployed version as it runs, when a rollout left it running under ids and config
    /// names of its own ([`crate::rollout::shape::versioned`]); only while that version is
    /// the deployed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<Manifest>,
}

impl StoredApp {
    pub fn latest(&self) -> Option<&StoredVersion> {
        self.versions.last()
    }

    pub fn version(&self, version: &str) -> Option<&StoredVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// What the app runs: its deployed version as it runs, or both versions at the current
    /// step of a rollout (see [`crate::rollout::effective`]).
    pub fn deployed_manifest(&self) -> Option<Manifest> {
        crate::rollout::effective(self)
    }

    /// The rollout under way, if one is.
    pub fn active_rollout(&self) -> Option<&Rollout> {
        self.rollout.as_ref().filter(|r| r.state.active())
    }

    /// Whether the app is undeployed by a non-destructive undeploy: the controller stops
    /// managing it and removes nothing.
    pub fn left_running(&self) -> bool {
        self.deployed.is_none()
            && self
                .history
                .last()
                .is_some_and(|h| h.version.is_none() && h.non_destructive)
    }

    /// Drops the oldest versions past `max` (never the deployed one, nor the newest) and the
    /// oldest history entries past `max_history`. Returns the versions dropped.
    pub fn prune(&mut self, max: usize, max_history: usize) -> Vec<String> {
        let mut pruned = Vec::new();
        while self.versions.len() > max.max(1) {
            let Some(i) = self.oldest_prunable() else {
                break;
            };
            pruned.push(self.versions.remove(i).version);
        }
        if self.history.len() > max_history {
            self.history.drain(..self.history.len() - max_history);
        }
        pruned
    }

    /// The oldest version that may go: not deployed, and not the newest.
    fn oldest_prunable(&self) -> Option<usize> {
        let newest = self.versions.len().checked_sub(1)?;
        let rolling_to = self.active_rollout().map(|r| r.to.as_str());
        (0..newest).find(|&i| {
            let version = Some(self.versions[i].version.as_str());
            version != self.deployed.as_deref() && version != rolling_to
        })
    }

    /// The version a rollback deploys: the most recent deployed version, other than the one
    /// deployed now, that is still stored.
    pub fn rollback_target(&self) -> Option<&str> {
        self.history
            .iter()
            .rev()
            .filter_map(|h| h.version.as_deref())
            .find(|v| Some(*v) != self.deployed.as_deref() && self.version(v).is_some())
    }
}

/// What a put did.
pub struct PutOutcome {
    pub created: bool,
    pub total_versions: usize,
    /// Older versions pruned to make room, oldest first.
    pub pruned: Vec<String>,
}

#[derive(Clone)]
pub struct ManifestStore {
    kv: kv::Store,
    settings: StoreSettings,
    /// The most one entry may hold: the server's largest message, less room for the headers
    /// and subject that travel with it.
    max_entry: usize,
    /// What the deployed apps claim, for the isolation check.
    deployed: Arc<DeployedClaims>,
}

fn nats_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Nats(e.to_string())
}

impl ManifestStore {
    pub async fn open(
        js: &jetstream::Context,
        lattice: &str,
        settings: &StoreSettings,
    ) -> anyhow::Result<Self> {
        let kv =
            trellis_bus::open_durable_bucket(js, &bucket(lattice), settings.durability).await?;
        let max_entry = js
            .client()
            .server_info()
            .max_payload
            .saturating_sub(4 << 10);
        let deployed = DeployedClaims::follow(&js.client(), &kv).await?;
        Ok(Self {
            kv,
            settings: *settings,
            max_entry,
            deployed,
        })
    }

    pub fn kv(&self) -> &kv::Store {
        &self.kv
    }

    pub async fn get(&self, name: &str) -> Result<Option<(StoredApp, u64)>, StoreError> {
        match self.kv.entry(name).await.map_err(nats_err)? {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let app = serde_json::from_slice(&entry.value).map_err(|e| {
                    tracing::warn!(
                        app = name,
                        "the store's entry for this app is unreadable: {e}"
                    );
                    StoreError::Unreadable {
                        app: name.into(),
                        why: e.to_string(),
                    }
                })?;
                Ok(Some((app, entry.revision)))
            }
            _ => Ok(None),
        }
    }

    /// Writes `app` at `revision` (created when `None`), bounded first: past the settings'
    /// counts, and then past what one entry holds, the oldest versions go. Returns what went.
    async fn write(
        &self,
        name: &str,
        app: &mut StoredApp,
        revision: Option<u64>,
    ) -> Result<Vec<String>, StoreError> {
        let mut pruned = app.prune(self.settings.max_versions, self.settings.max_history);
        let mut value = serde_json::to_vec(&*app).map_err(nats_err)?;
        while value.len() > self.max_entry {
            let Some(i) = app.oldest_prunable() else {
                return Err(StoreError::TooLarge {
                    app: name.into(),
                    bytes: value.len(),
                    max: self.max_entry,
                });
            };
            pruned.push(app.versions.remove(i).version);
            value = serde_json::to_vec(&*app).map_err(nats_err)?;
        }
        if !pruned.is_empty() {
            tracing::info!(
                app = name,
                ?pruned,
                "pruned the oldest versions to stay within the store's bounds"
            );
        }
        let value = value.into();
        let result = match revision {
            Some(rev) => self.kv.update(name, value, rev).await.map(|_| ()),
            None => {
                return self
                    .kv
                    .create(name, value)
                    .await
                    .map(|_| pruned)
                    .map_err(|e| {
                        if e.kind() == kv::CreateErrorKind::AlreadyExists {
                            StoreError::Conflict(name.into())
                        } else {
                            nats_err(e)
                        }
                    })
            }
        };
        result.map(|_| pruned).map_err(|e| {
            if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
                StoreError::Conflict(name.into())
            } else {
                nats_err(e)
            }
        })
    }

    pub async fn put(&self, manifest: Manifest) -> Result<PutOutcome, StoreError> {
        let name = manifest.name().to_string();
        let version = manifest.version().to_string();
        let (mut app, revision) = match self.get(&name).await? {
            Some((app, rev)) => (app, Some(rev)),
            None => (StoredApp::default(), None),
        };
        if app.version(&version).is_some() {
            return Err(StoreError::VersionExists { app: name, version });
        }
        self.check_isolation(&manifest).await?;
        let created = app.versions.is_empty();
        app.versions.push(StoredVersion {
            version,
            manifest,
            put_at: Utc::now(),
        });
        let pruned = self.write(&name, &mut app, revision).await?;
        Ok(PutOutcome {
            created,
            total_versions: app.versions.len(),
            pruned,
        })
    }

    /// Marks a version (the latest when `None`) as deployed; returns it.
    /// Deploys `version` (the latest when `None`); returns it, with its manifest.
    pub async fn deploy(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<(String, Manifest), StoreError> {
        let (app, revision) = self
            .get(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(name.into()))?;
        let version = match version {
            Some(v) => app
                .version(v)
                .ok_or_else(|| StoreError::VersionNotFound {
                    app: name.into(),
                    version: v.into(),
                })?
                .version
                .clone(),
            None => app
                .latest()
                .ok_or_else(|| StoreError::NotFound(name.into()))?
                .version
                .clone(),
        };
        self.deploy_version(name, app, revision, version).await
    }

    /// Deploys the version deployed before the current one (see
    /// [`StoredApp::rollback_target`]); returns it.
    pub async fn rollback(&self, name: &str) -> Result<(String, Manifest), StoreError> {
        let (app, revision) = self
            .get(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(name.into()))?;
        let target = app
            .rollback_target()
            .ok_or_else(|| StoreError::NoRollback(name.into()))?
            .to_string();
        self.deploy_version(name, app, revision, target).await
    }

    /// Marks `version` of `app` (read at `revision`) deployed, once no other deployed app
    /// claims what it declares; returns the version and its manifest.
    async fn deploy_version(
        &self,
        name: &str,
        mut app: StoredApp,
        revision: u64,
        version: String,
    ) -> Result<(String, Manifest), StoreError> {
        let manifest = app
            .version(&version)
            .map(|v| v.manifest.clone())
            .ok_or_else(|| StoreError::VersionNotFound {
                app: name.into(),
                version: version.clone(),
            })?;
        if let Some(rollout) = app.active_rollout() {
            if rollout.to == version {
                return Ok((version, manifest));
            }
            return Err(StoreError::RolloutUnderWay {
                app: name.into(),
                from: rollout.from.clone(),
                to: rollout.to.clone(),
            });
        }
        let now = Utc::now();
        match crate::rollout::start(&app, &version, now) {
            Some(rollout) => {
                // Both versions run side by side from now on: check what both claim.
                app.rollout = Some(rollout);
                let both = app.deployed_manifest().unwrap_or_else(|| manifest.clone());
                self.check_isolation(&both).await?;
            }
            None => {
                self.check_isolation(&manifest).await?;
                if app.deployed.as_deref() != Some(version.as_str()) {
                    app.live = None;
                }
                app.deployed = Some(version.clone());
                app.history.push(HistoryEntry {
                    version: Some(version.clone()),
                    at: now,
                    non_destructive: false,
                });
            }
        }
        self.write(name, &mut app, Some(revision)).await?;
        Ok((version, manifest))
    }

    /// Marks the app undeployed. With `non_destructive`, the controller stops managing what it
    /// runs and leaves it in place; otherwise it removes it.
    pub async fn undeploy(&self, name: &str, non_destructive: bool) -> Result<(), StoreError> {
        let (mut app, revision) = self
            .get(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(name.into()))?;
        app.deployed = None;
        crate::rollout::end_by_undeploy(&mut app, Utc::now());
        app.history.push(HistoryEntry {
            version: None,
            at: Utc::now(),
            non_destructive,
        });
        self.write(name, &mut app, Some(revision)).await.map(|_| ())
    }

    /// Deletes one version, or the whole app when `version` is `None`. Returns whether the
    /// deployed version went with it.
    pub async fn delete(&self, name: &str, version: Option<&str>) -> Result<bool, StoreError> {
        let (mut app, revision) = self
            .get(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(name.into()))?;
        let was_deployed = app.deployed.is_some();
        match version {
            None => {
                self.delete_entry(name, revision).await?;
                Ok(was_deployed)
            }
            Some(v) => {
                if app.version(v).is_none() {
                    return Err(StoreError::VersionNotFound {
                        app: name.into(),
                        version: v.into(),
                    });
                }
                app.versions.retain(|x| x.version != v);
                let undeployed = app.deployed.as_deref() == Some(v);
                if undeployed {
                    app.deployed = None;
                }
                if app.versions.is_empty() {
                    self.delete_entry(name, revision).await?;
                } else {
                    self.write(name, &mut app, Some(revision)).await?;
                }
                Ok(undeployed)
            }
        }
    }

    /// Refuses `manifest` when it claims what another deployed app owns. The one check behind
    /// put, deploy and rollback: an app put while its rival was undeployed is caught when
    /// either of them is deployed.
    async fn check_isolation(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let latest = self
            .kv
            .status()
            .await
            .map_err(nats_err)?
            .info
            .state
            .last_sequence;
        if let Some(verdict) = self.deployed.check(manifest, latest).await {
            return Ok(verdict?);
        }
        tracing::warn!(
            app = manifest.name(),
            "the manifest bucket's watch is behind; checking against every app's entry"
        );
        let apps = self.list().await?;
        Ok(isolation::check(
            manifest,
            deployed_manifests(&apps).iter(),
        )?)
    }

    /// Deletes the app's entry if it is still at `revision`.
    async fn delete_entry(&self, name: &str, revision: u64) -> Result<(), StoreError> {
        self.kv
            .delete_expect_revision(name, Some(revision))
            .await
            .map_err(|e| {
                if e.kind() == kv::DeleteErrorKind::WrongLastRevision {
                    StoreError::Conflict(name.into())
                } else {
                    nats_err(e)
                }
            })
    }

    pub async fn list(&self) -> Result<Vec<(String, StoredApp)>, StoreError> {
        use futures::TryStreamExt;
        let keys: Vec<String> = match self.kv.keys().await {
            Ok(keys) => keys.try_collect().await.map_err(nats_err)?,
            Err(e) => return Err(nats_err(e)),
        };
        let mut apps = Vec::new();
        for key in keys {
            match self.get(&key).await {
                Ok(Some((app, _))) => apps.push((key, app)),
                Ok(None) => {}
                // One unreadable entry (written by something else) must not hide every app.
                Err(StoreError::Unreadable { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        apps.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(apps)
    }
}

/// The deployed version of each app: what owns names on the lattice now.
fn deployed_manifests(apps: &[(String, StoredApp)]) -> Vec<Manifest> {
    apps.iter()
        .filter_map(|(_, app)| app.deployed_manifest())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(name: &str, id: &str, deployed: bool) -> (String, StoredApp) {
        let text = format!(
            r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {name}
  annotations:
    version: v1
spec:
  components:
    - name: worker
      type: component
      properties:
        image: file://worker.wasm
        id: {id}
"#
        );
        let manifest = Manifest::parse(&text).unwrap();
        let app = StoredApp {
            versions: vec![StoredVersion {
                version: "v1".into(),
                manifest,
                put_at: Utc::now(),
            }],
            deployed: deployed.then(|| "v1".to_string()),
            ..StoredApp::default()
        };
        (name.to_string(), app)
    }

    fn versions(n: usize, deployed: Option<usize>) -> StoredApp {
        let (_, one) = stored("shop", "worker", false);
        let template = one.versions[0].clone();
        let versions: Vec<StoredVersion> = (0..n)
            .map(|i| StoredVersion {
                version: format!("v{i}"),
                ..template.clone()
            })
            .collect();
        StoredApp {
            deployed: deployed.map(|i| format!("v{i}")),
            history: (0..n)
                .map(|i| HistoryEntry {
                    version: Some(format!("v{i}")),
                    at: Utc::now(),
                    non_destructive: false,
                })
                .collect(),
            versions,
            ..StoredApp::default()
        }
    }

    #[test]
    fn prune_drops_the_oldest_but_never_the_deployed_or_newest() {
        let mut app = versions(6, Some(0));
        let pruned = app.prune(3, 2);
        assert_eq!(pruned, ["v1", "v2", "v3"]);
        let kept: Vec<&str> = app.versions.iter().map(|v| v.version.as_str()).collect();
        assert_eq!(kept, ["v0", "v4", "v5"]);
        assert_eq!(app.history.len(), 2);
        assert_eq!(app.history[0].version.as_deref(), Some("v4"));
        // Nothing left to prune: the deployed one and the newest stay whatever the bound.
        let mut two = versions(2, Some(0));
        assert!(two.prune(1, 10).is_empty());
        assert_eq!(two.versions.len(), 2);
    }

    #[test]
    fn only_deployed_apps_own_names() {
        let (_, shop) = stored("shop", "worker", false);
        let shop = shop.versions[0].manifest.clone();
        let undeployed = [stored("web", "worker", false)];
        assert!(isolation::check(&shop, deployed_manifests(&undeployed).iter()).is_ok());
        let deployed = [stored("web", "worker", true)];
        let refused = isolation::check(&shop, deployed_manifests(&deployed).iter()).unwrap_err();
        assert_eq!(refused.owner, "web");
    }
}
