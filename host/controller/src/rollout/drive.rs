//! One look of a rollout's owner at a rollout under way: ask the plugin for the next step
//! (or finish a rollback or a completion the look before began) and say what to store.
//!
//! Pure but for the plugin call: the stored rollout, the figures and the time decide, so the
//! look is the same whichever controller makes it. The caller writes the result with a
//! compare-and-swap on the entry it read.

use std::time::Duration;

use chrono::{DateTime, Utc};
use trellis_lattice::api::{HostSplit, Rollout, RolloutState, RolloutTarget, VersionFigures};
use trellis_runtime::bindings::rollout::exports::trellis::plugin::rollout_api as wit;
use trellis_runtime::PluginSet;

use crate::store::{HistoryEntry as Deployed, StoredApp};

/// How long every request has been off a version before its instances are removed (after
/// an abort, the new version; at completion, the old): the nodes' HTTP servers have applied
/// the new weights and requests in flight on it have finished.
pub const DRAIN: Duration = Duration::from_secs(2);

/// How often a holding rollout's figures and message are written to the store even when its
/// step stays, so that `rollout status` is at most this old.
pub const REFRESH: Duration = Duration::from_secs(5);

/// When the plugin asks for nothing (or cannot be asked): look again after this long.
pub const IDLE_LOOK: Duration = Duration::from_secs(5);

/// The soonest and latest a rollout plugin's `recheck-after-ms` is honoured.
const MIN_LOOK: Duration = Duration::from_millis(100);
const MAX_LOOK: Duration = Duration::from_secs(3600);

/// What one look decided.
#[derive(Debug)]
pub struct Look {
    /// The app to store, when the rollout changed.
    pub write: Option<StoredApp>,
    /// When to look again.
    pub after: Duration,
    /// A change worth a log line (a step taken, a rollback, the end).
    pub news: Option<String>,
}

/// Looks at `app`'s rollout under way at `now`, with both versions' `figures`.
pub fn look(
    app: &StoredApp,
    plugins: &PluginSet,
    old: VersionFigures,
    new: VersionFigures,
    now: DateTime<Utc>,
) -> Option<Look> {
    let rollout = app.active_rollout()?.clone();
    let held = (now - rollout.step_started_at).to_std().unwrap_or_default();
    let mut next = app.clone();
    let r = next.rollout.as_mut()?;
    r.old = Some(old.clone());
    r.new = Some(new.clone());
    match rollout.state {
        RolloutState::RollingBack | RolloutState::Finishing => {
            if held < DRAIN {
                return Some(wait(DRAIN - held));
            }
            let news = if rollout.state == RolloutState::RollingBack {
                r.state = RolloutState::RolledBack;
                r.message = format!("rolled back to {}: {}", rollout.from, rollout.message);
                r.message.clone()
            } else {
                complete(&mut next, now)?;
                format!("rolled out {}", rollout.to)
            };
            if let Some(r) = next.rollout.as_mut() {
                r.updated_at = now;
            }
            return Some(Look {
                write: Some(next),
                after: IDLE_LOOK,
                news: Some(news),
            });
        }
        _ => {}
    }
    if let Some(why) = rollout.abort_requested.clone() {
        roll_back(r, &format!("aborted by a person: {why}"), now);
        return Some(changed(next, DRAIN, format!("aborted by a person: {why}")));
    }
    let Some(plugin) = plugins.rollouts.get(&rollout.strategy) else {
        let loaded: Vec<&str> = plugins.rollouts.keys().map(String::as_str).collect();
        let why = format!(
            "no rollout plugin provides strategy `{}` (loaded: {}); add its plugin to the plugin folder, or `trellis app rollout abort {}`",
            rollout.strategy,
            if loaded.is_empty() { "none".into() } else { loaded.join(", ") },
            app_name(app)
        );
        return Some(hold(next, &rollout, why, now));
    };
    let ctx = context(app_name(app), &rollout, old, new, held);
    let decision = match plugin.step(&ctx) {
        Ok(decision) => decision,
        Err(e) => {
            let why = format!("the rollout plugin failed, the rollout holds its step: {e}");
            return Some(hold(next, &rollout, why, now));
        }
    };
    let after = decision
        .recheck_after_ms
        .map(|ms| Duration::from_millis(u64::from(ms)).clamp(MIN_LOOK, MAX_LOOK))
        .unwrap_or(IDLE_LOOK);
    r.memo = decision.memo.clone();
    r.message = decision.message.clone();
    let target = target_from(decision.target);
    match decision.phase {
        wit::RolloutPhase::Abort(why) => {
            roll_back(r, &why, now);
            Some(changed(next, DRAIN, format!("the plugin aborted: {why}")))
        }
        wit::RolloutPhase::Done => {
            r.take_step(
                rollout.step + 1,
                everything_new(&rollout.target),
                &decision.message,
                now,
            );
            r.state = RolloutState::Finishing;
            Some(changed(
                next,
                DRAIN,
                format!("every step passed: {}", decision.message),
            ))
        }
        phase => {
            r.state = match phase {
                wit::RolloutPhase::WaitingForPromotion(_) => RolloutState::WaitingForPromotion,
                _ => RolloutState::Progressing,
            };
            let moved = decision.step != rollout.step || target != rollout.target;
            if moved {
                r.take_step(decision.step, target, &decision.message, now);
            }
            let news = moved.then(|| format!("step {}: {}", decision.step, decision.message));
            let worth_writing = moved
                || r.state != rollout.state
                || r.memo != rollout.memo
                || (now - rollout.updated_at).to_std().unwrap_or_default() >= REFRESH;
            if !worth_writing {
                return Some(wait(after));
            }
            r.updated_at = now;
            Some(Look {
                write: Some(next),
                after,
                news,
            })
        }
    }
}

fn app_name(app: &StoredApp) -> &str {
    app.versions
        .first()
        .map(|v| v.manifest.name())
        .unwrap_or_default()
}

fn wait(after: Duration) -> Look {
    Look {
        write: None,
        after,
        news: None,
    }
}

fn changed(next: StoredApp, after: Duration, news: String) -> Look {
    Look {
        write: Some(next),
        after,
        news: Some(news),
    }
}

/// Keeps the step and says why, writing when the reason is new or the figures are old.
fn hold(mut next: StoredApp, rollout: &Rollout, why: String, now: DateTime<Utc>) -> Look {
    let stale = (now - rollout.updated_at).to_std().unwrap_or_default() >= REFRESH;
    if rollout.message == why && !stale {
        return wait(IDLE_LOOK);
    }
    tracing::warn!(strategy = %rollout.strategy, from = %rollout.from, to = %rollout.to, "rollout holds: {why}");
    if let Some(r) = next.rollout.as_mut() {
        r.message = why;
        r.updated_at = now;
    }
    Look {
        write: Some(next),
        after: IDLE_LOOK,
        news: None,
    }
}

/// Every request back to the old version, which runs in full on every host; the new one
/// keeps its instances until [`DRAIN`] has passed.
fn roll_back(r: &mut Rollout, why: &str, now: DateTime<Utc>) {
    let hosts = r.target.hosts.clone().map(|split| HostSplit {
        old_values: split
            .old_values
            .iter()
            .chain(&split.new_values)
            .cloned()
            .collect(),
        ..split
    });
    let target = RolloutTarget {
        traffic: 0,
        new_instances: r.target.new_instances,
        old_instances: 100,
        hosts,
    };
    let step = r.step + 1;
    r.take_step(step, target, why, now);
    r.state = RolloutState::RollingBack;
    r.message = why.to_string();
    r.abort_requested = None;
}

/// The last step: every request and every instance to the new version, the old one still
/// running until [`DRAIN`] has passed.
fn everything_new(current: &RolloutTarget) -> RolloutTarget {
    RolloutTarget {
        traffic: 100,
        new_instances: 100,
        old_instances: current.old_instances,
        hosts: None,
    }
}

/// The new version becomes the app: deployed, running under the ids it ran with.
fn complete(app: &mut StoredApp, now: DateTime<Utc>) -> Option<()> {
    let rollout = app.rollout.clone()?;
    app.live = Some(super::new_version(app, &rollout)?);
    app.deployed = Some(rollout.to.clone());
    app.history.push(Deployed {
        version: Some(rollout.to.clone()),
        at: now,
        non_destructive: false,
    });
    let r = app.rollout.as_mut()?;
    r.state = RolloutState::Done;
    r.target = RolloutTarget {
        traffic: 100,
        new_instances: 100,
        old_instances: 0,
        hosts: None,
    };
    Some(())
}

fn context(
    app: &str,
    rollout: &Rollout,
    old: VersionFigures,
    new: VersionFigures,
    held: Duration,
) -> wit::RolloutContext {
    wit::RolloutContext {
        app: app.to_string(),
        old: figures_to(old),
        new: figures_to(new),
        strategy: rollout.strategy.clone(),
        properties: serde_json::to_string(&rollout.properties).unwrap_or_else(|_| "{}".into()),
        step: rollout.step,
        target: target_to(&rollout.target),
        step_elapsed_ms: u64::try_from(held.as_millis()).unwrap_or(u64::MAX),
        promoted: rollout.promoted,
        memo: rollout.memo.clone(),
    }
}

fn figures_to(f: VersionFigures) -> wit::VersionFigures {
    wit::VersionFigures {
        version: f.version,
        instances: f.instances,
        wanted: f.wanted,
        requests_per_second: f.requests_per_second,
        requests: f.requests,
        failed: f.failed,
        p99_ms: f.p99_ms,
        on_unhealthy_hosts: f.on_unhealthy_hosts,
    }
}

fn target_to(t: &RolloutTarget) -> wit::RolloutTarget {
    wit::RolloutTarget {
        traffic: t.traffic,
        new_instances: t.new_instances,
        old_instances: t.old_instances,
        hosts: t.hosts.clone().map(|h| wit::HostSplit {
            label: h.label,
            new_values: h.new_values,
            old_values: h.old_values,
        }),
    }
}

fn target_from(t: wit::RolloutTarget) -> RolloutTarget {
    RolloutTarget {
        traffic: t.traffic,
        new_instances: t.new_instances,
        old_instances: t.old_instances,
        hosts: t.hosts.map(|h| HostSplit {
            label: h.label,
            new_values: h.new_values,
            old_values: h.old_values,
        }),
    }
}
