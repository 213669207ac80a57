//! Rollouts: an app moved from its deployed version to a new one in steps that a rollout
//! plugin decides (`canary`, `blue-green`, or one a user drops in the plugin folder).
//!
//! - A deploy of a version whose manifest has a `rollout` policy, while another version is
//!   deployed, starts one ([`start`]) instead of switching versions.
//! - The rollout is stored with the app (`StoredApp::rollout`); what the app runs at its
//!   step is one manifest derived from the store alone ([`effective`], `shape.rs`), so the
//!   reconcile loop carries a step out with the usual scalers, and any controller derives the
//!   same manifest.
//! - The app's owner asks the plugin for the next step ([`drive`]), from the stored step and
//!   how long it has held and both versions' figures (`figures.rs`), and writes the step with
//!   a compare-and-swap on the entry it read: a step is taken once, and a controller that
//!   takes the app over carries on from the stored step.
//! - A person promotes or aborts through the API (`api.rs`); an abort, or a plugin's, moves
//!   every request back to the old version, then removes the new one.

use chrono::{DateTime, Utc};
use trellis_lattice::api::{rollout_policy, Rollout, RolloutState};
use trellis_lattice::Manifest;

use crate::store::StoredApp;

pub mod api;
pub mod check;
pub mod drive;
pub mod figures;
pub mod shape;

/// What the app runs now: nothing when undeployed; the deployed version as it runs; or, while
/// a rollout is under way, both versions at its step ([`shape::during`]).
pub fn effective(app: &StoredApp) -> Option<Manifest> {
    let deployed = app.deployed.as_deref()?;
    let old = running(app, deployed)?;
    match app.active_rollout() {
        Some(rollout) if rollout.from == deployed => match app.version(&rollout.to) {
            Some(new) => Some(shape::during(
                &old,
                &shape::versioned(&new.manifest, &old),
                &rollout.target,
            )),
            // The new version was deleted: nothing of it can run.
            None => Some(old),
        },
        _ => Some(old),
    }
}

/// `version` as it runs: under the ids a rollout gave it, or as stored.
fn running(app: &StoredApp, version: &str) -> Option<Manifest> {
    match &app.live {
        Some(live) if live.version() == version => Some(live.clone()),
        _ => app.version(version).map(|v| v.manifest.clone()),
    }
}

/// The rollout a deploy of `version` starts: when another version is deployed and
/// `version`'s manifest has a `rollout` policy. `None`: the deploy switches at once.
pub fn start(app: &StoredApp, version: &str, now: DateTime<Utc>) -> Option<Rollout> {
    let from = app.deployed.as_deref().filter(|v| *v != version)?;
    let manifest = &app.version(version)?.manifest;
    let (strategy, properties) = rollout_policy(manifest)?;
    Some(Rollout::new(
        from,
        version,
        strategy,
        properties.clone(),
        now,
    ))
}

/// An undeploy ends a rollout under way: nothing of either version is to run.
pub fn end_by_undeploy(app: &mut StoredApp, now: DateTime<Utc>) {
    if let Some(rollout) = app.rollout.as_mut().filter(|r| r.state.active()) {
        rollout.state = RolloutState::RolledBack;
        rollout.message = "ended by an undeploy".into();
        rollout.updated_at = now;
    }
}

/// The new version as it runs during and after a rollout: its [`shape::versioned`] form.
pub fn new_version(app: &StoredApp, rollout: &Rollout) -> Option<Manifest> {
    let old = running(app, &rollout.from)?;
    app.version(&rollout.to)
        .map(|v| shape::versioned(&v.manifest, &old))
}

/// The old version as it runs during a rollout.
pub fn old_version(app: &StoredApp, rollout: &Rollout) -> Option<Manifest> {
    running(app, &rollout.from)
}

#[cfg(test)]
mod tests;
