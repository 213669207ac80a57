//! What the store does for rollouts (`crate::rollout`): the owner's write of a step against
//! the revision it read, and a person's promotion or abort.

use chrono::Utc;
use trellis_lattice::api::Rollout;

use super::{ManifestStore, StoreError, StoredApp};

impl ManifestStore {
    /// Writes `app`, as changed by a rollout's owner from the entry it read at `revision`:
    /// fails with a conflict when the entry changed meanwhile (another controller, a person),
    /// so a step is taken once, from what the step before it left.
    pub async fn write_rollout(
        &self,
        name: &str,
        mut app: StoredApp,
        revision: u64,
    ) -> Result<(), StoreError> {
        self.write(name, &mut app, Some(revision)).await.map(drop)
    }

    /// Changes the app's rollout under way with `change` (a promotion, an abort: `action`)
    /// and returns it as written; refused once the rollout is rolling back or finishing;
    /// retried once when someone else wrote the entry meanwhile.
    pub async fn change_rollout(
        &self,
        name: &str,
        action: &'static str,
        change: impl Fn(&mut Rollout),
    ) -> Result<Rollout, StoreError> {
        let mut attempts = 0;
        loop {
            let (mut app, revision) = self
                .get(name)
                .await?
                .ok_or_else(|| StoreError::NotFound(name.into()))?;
            let Some(rollout) = app.rollout.as_mut().filter(|r| r.state.active()) else {
                return Err(StoreError::NoRollout(name.into()));
            };
            if !rollout.state.open_to_people() {
                return Err(StoreError::RolloutEnding {
                    app: name.into(),
                    state: rollout.state,
                    action,
                });
            }
            change(rollout);
            rollout.updated_at = Utc::now();
            let written = rollout.clone();
            match self.write(name, &mut app, Some(revision)).await {
                Err(StoreError::Conflict(_)) if attempts == 0 => attempts += 1,
                other => return other.map(|_| written),
            }
        }
    }
}
