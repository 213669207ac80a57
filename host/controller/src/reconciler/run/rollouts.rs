//! The owner's part in rollouts: after a pass, each rolling app it planned gets a look
//! (`crate::rollout::drive`), and what the look decided is written to the manifest store,
//! whose watch then brings the app's new shape back to the loop.

use std::collections::BTreeSet;
use std::time::Instant;

use chrono::Utc;

use super::Reconciler;
use crate::rollout::{self, drive, figures};
use crate::store::StoreError;

impl Reconciler {
    /// Looks at the rollouts under way of `apps` (planned by this pass, so owned here).
    pub(super) async fn drive_rollouts(&mut self, apps: &BTreeSet<String>) {
        let mut looks = Vec::new();
        for name in apps {
            let Some((stored, revision)) = self.apps.rolling.get(name) else {
                continue;
            };
            let (Some(shaped), Some(r)) = (self.apps.manifests.get(name), stored.active_rollout())
            else {
                continue;
            };
            let (Some(old), Some(new)) = (
                rollout::old_version(stored, r),
                rollout::new_version(stored, r),
            ) else {
                continue;
            };
            let old = figures::of(&self.state, &old, shaped);
            let new = figures::of(&self.state, &new, shaped);
            looks.push((name.clone(), stored.clone(), *revision, old, new));
        }
        if looks.is_empty() {
            return;
        }
        let plugins = self.runtime.plugins();
        // Plugin calls stay off the async workers, as a pass's do.
        let decided = tokio::task::spawn_blocking(move || {
            let now = Utc::now();
            looks
                .into_iter()
                .filter_map(|(name, stored, revision, old, new)| {
                    let look = drive::look(&stored, &plugins, old, new, now)?;
                    Some((name, revision, look))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (name, revision, look) in decided {
            let now = Instant::now();
            self.dirty.recheck(&name, now + look.after);
            if let Some(news) = &look.news {
                tracing::info!(lattice = %self.lattice, app = %name, "rollout: {news}");
            }
            let Some(app) = look.write else {
                continue;
            };
            let rollout = app.rollout.clone();
            match self.store.write_rollout(&name, app, revision).await {
                Ok(()) => {
                    if let (Some(news), Some(rollout)) = (&look.news, rollout) {
                        let controller = self.ownership.id();
                        crate::notify::rollout_changed(
                            &self.client,
                            &self.lattice,
                            &controller,
                            &name,
                            &rollout,
                            news,
                        )
                        .await;
                    }
                }
                // Someone wrote the entry since it was read (a promotion, an abort): the
                // watch brings the new one, and the app is looked at again with it.
                Err(StoreError::Conflict(_)) => self.dirty.app(&name, now),
                Err(e) => {
                    tracing::warn!(lattice = %self.lattice, app = %name, "cannot store the rollout's step; trying again: {e}");
                    self.dirty.recheck(&name, now + drive::IDLE_LOOK);
                }
            }
        }
    }
}
