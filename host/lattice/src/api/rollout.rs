//! Rollouts (an extension): an app moved from its deployed version to a new one in steps
//! decided by a rollout plugin, each step stored with the app so that any controller carries
//! on from it. A new version's manifest asks for one with a policy named [`ROLLOUT_POLICY`]
//! whose `type` is a strategy a rollout plugin provides (`canary`, `blue-green`).
//!
//! Subjects: `trellis.api.{lattice}.rollout.{get,promote,abort}.{name}`, answered with
//! [`RolloutResponse`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ErrorCode, Manifest};

/// The name of the policy that asks for a rollout: `spec.policies[] {name: rollout, type:
/// STRATEGY, properties: {...}}`.
pub const ROLLOUT_POLICY: &str = "rollout";

/// How many step records a rollout keeps (the oldest go first): a canary has a handful of
/// steps; this bounds a plugin that moves back and forth.
pub const MAX_STEP_RECORDS: usize = 64;

/// The rollout policy of a manifest, when it has one: (strategy, properties).
pub fn rollout_policy(manifest: &Manifest) -> Option<(&str, &BTreeMap<String, String>)> {
    manifest
        .spec
        .policies
        .iter()
        .find(|p| p.name == ROLLOUT_POLICY)
        .map(|p| (p.policy_type.as_str(), &p.properties))
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Moving through its steps.
    #[default]
    Progressing,
    /// Holding until a person promotes it.
    WaitingForPromotion,
    /// Aborted: traffic back on the old version, the new one about to be removed.
    RollingBack,
    /// Every step passed: traffic all on the new version, the old one about to be removed.
    Finishing,
    /// Over: the old version is the app again.
    RolledBack,
    /// Over: the new version is the app.
    Done,
}

impl RolloutState {
    /// Whether the rollout still moves (its app runs both versions).
    pub fn active(self) -> bool {
        matches!(
            self,
            RolloutState::Progressing
                | RolloutState::WaitingForPromotion
                | RolloutState::RollingBack
                | RolloutState::Finishing
        )
    }

    /// Whether a person may still promote or abort it (not once it rolls back or finishes).
    pub fn open_to_people(self) -> bool {
        matches!(
            self,
            RolloutState::Progressing | RolloutState::WaitingForPromotion
        )
    }
}

impl std::fmt::Display for RolloutState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RolloutState::Progressing => "progressing",
            RolloutState::WaitingForPromotion => "waiting for promotion",
            RolloutState::RollingBack => "rolling back",
            RolloutState::Finishing => "finishing",
            RolloutState::RolledBack => "rolled back",
            RolloutState::Done => "done",
        })
    }
}

/// Which hosts each version runs on when a step splits by a host label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSplit {
    pub label: String,
    pub new_values: Vec<String>,
    pub old_values: Vec<String>,
}

/// What each version gets at one step, in percent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutTarget {
    /// Of HTTP requests, to the new version.
    pub traffic: u8,
    /// Of the instances its manifest asks for, run by each version.
    pub new_instances: u8,
    pub old_instances: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<HostSplit>,
}

impl RolloutTarget {
    /// Before the first step, and after a rollback: everything on the old version.
    pub fn start() -> Self {
        Self {
            traffic: 0,
            new_instances: 0,
            old_instances: 100,
            hosts: None,
        }
    }
}

/// How one version does, as the last analysis saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionFigures {
    pub version: String,
    pub instances: u32,
    pub wanted: u32,
    pub requests_per_second: f64,
    pub requests: u64,
    pub failed: u64,
    pub p99_ms: f64,
    pub on_unhealthy_hosts: u32,
}

/// One step taken, for the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: u32,
    pub target: RolloutTarget,
    pub at: DateTime<Utc>,
    pub message: String,
}

/// A rollout, as stored with its app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// The versions rolled from and to.
    pub from: String,
    pub to: String,
    /// The strategy and the policy's properties.
    pub strategy: String,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    pub state: RolloutState,
    /// The step reached (0: none yet) and what it gives each version.
    pub step: u32,
    pub target: RolloutTarget,
    /// The plugin's last word: what the analysis found, or why it stopped.
    #[serde(default)]
    pub message: String,
    pub started_at: DateTime<Utc>,
    pub step_started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// A person promoted past the current step.
    #[serde(default)]
    pub promoted: bool,
    /// A person asked to abort, with why; the owner rolls back on its next look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_requested: Option<String>,
    /// What the plugin asked to get back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
    /// The old and the new version's figures at the last decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<VersionFigures>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<VersionFigures>,
    /// The steps taken, oldest first (at most [`MAX_STEP_RECORDS`]).
    #[serde(default)]
    pub steps: Vec<StepRecord>,
}

impl Rollout {
    /// A rollout about to take its first step.
    pub fn new(
        from: &str,
        to: &str,
        strategy: &str,
        properties: BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            from: from.into(),
            to: to.into(),
            strategy: strategy.into(),
            properties,
            state: RolloutState::Progressing,
            step: 0,
            target: RolloutTarget::start(),
            message: "starting".into(),
            started_at: now,
            step_started_at: now,
            updated_at: now,
            promoted: false,
            abort_requested: None,
            memo: None,
            old: None,
            new: None,
            steps: Vec::new(),
        }
    }

    /// Moves to `step` with `target` at `now`, recording it.
    pub fn take_step(
        &mut self,
        step: u32,
        target: RolloutTarget,
        message: &str,
        now: DateTime<Utc>,
    ) {
        self.step = step;
        self.target = target.clone();
        self.step_started_at = now;
        self.promoted = false;
        self.steps.push(StepRecord {
            step,
            target,
            at: now,
            message: message.into(),
        });
        if self.steps.len() > MAX_STEP_RECORDS {
            self.steps.remove(0);
        }
    }
}

/// What `rollout.{get,promote,abort}` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutAction {
    Get,
    Promote,
    Abort,
}

impl RolloutAction {
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "get" => Some(Self::Get),
            "promote" => Some(Self::Promote),
            "abort" => Some(Self::Abort),
            _ => None,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Promote => "promote",
            Self::Abort => "abort",
        }
    }
}

/// The request of `rollout.abort` (optional: why, for the record).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RolloutRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

/// The answer of `rollout.{get,promote,abort}.{name}`: the app's current or last rollout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutResponse {
    /// `success`, `notfound` or `error`.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    pub message: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
}
