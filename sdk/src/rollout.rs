//! The rollout contract in Rust terms: implement [`Rollout`] and call
//! [`export_rollout!`](crate::export_rollout).
//!
//! A rollout plugin decides, one step at a time, how an app moves from its deployed version to
//! a new one: what share of instances each version runs, what share of HTTP requests the new
//! one gets, on which hosts, and when to stop and roll back. The controller stores every step,
//! applies it and asks again; the plugin keeps nothing between calls but its [`memo`].
//!
//! [`memo`]: RolloutContext::memo

use std::collections::BTreeMap;

use crate::types::{Diagnostic, PluginInfo};

/// How one version of the app does now, over its components and the hosts' last 10 s.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VersionFigures {
    /// The app version these figures are for (the manifest's `version`).
    pub version: String,
    /// Instances of this version running now.
    pub instances: u32,
    /// Instances of this version the current step asks for; fewer running means the step has
    /// not fully taken effect.
    pub wanted: u32,
    /// Requests per second, summed over the version's components.
    pub requests_per_second: f64,
    /// Requests the version's components answered over the hosts' window (about 10 s).
    pub requests: u64,
    /// How many of `requests` failed: a server error (5xx) or a trap.
    pub failed: u64,
    /// The worst p99 latency of the version's components, in milliseconds.
    pub p99_ms: f64,
    /// Instances on hosts that missed heartbeats.
    pub on_unhealthy_hosts: u32,
}

impl VersionFigures {
    /// Failed requests over requests (0 when there were none).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.failed as f64 / self.requests as f64
        }
    }

    /// Whether every instance the step asks for runs, none of them on an unhealthy host.
    pub fn ready(&self) -> bool {
        self.instances >= self.wanted && self.on_unhealthy_hosts == 0
    }
}

/// Which hosts each version runs on when a step splits by a host label.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostSplit {
    /// The host label the hosts are split by (e.g. `region`); every host that runs the app
    /// should carry it.
    pub label: String,
    /// Values of `label` whose hosts run the new version.
    pub new_values: Vec<String>,
    /// Values of `label` whose hosts run the old version.
    pub old_values: Vec<String>,
}

/// What each version gets at one step. Percentages run from 0 to 100.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RolloutTarget {
    /// Percent (0..=100) of HTTP requests sent to the new version where both serve one listener.
    pub traffic: u8,
    /// Percent (0..=100) of the instances its manifest asks for that the new version runs.
    pub new_instances: u8,
    /// Percent (0..=100) of the instances its manifest asks for that the old version runs.
    pub old_instances: u8,
    /// Which hosts each version runs on when the step splits by a host label; `None`: no split.
    pub hosts: Option<HostSplit>,
}

impl RolloutTarget {
    /// Before the first step: everything on the old version.
    pub fn start() -> Self {
        Self {
            traffic: 0,
            new_instances: 0,
            old_instances: 100,
            hosts: None,
        }
    }

    /// `percent` of instances and of requests on the new version, the rest on the old.
    pub fn weighted(percent: u8) -> Self {
        let percent = percent.min(100);
        Self {
            traffic: percent,
            new_instances: percent,
            old_instances: 100 - percent,
            hosts: None,
        }
    }
}

/// Where a rollout stands, as the controller stored it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RolloutContext {
    /// The name of the app being rolled out.
    pub app: String,
    /// How the version rolled from is doing.
    pub old: VersionFigures,
    /// How the version rolled to is doing.
    pub new: VersionFigures,
    /// The strategy asked for: the `type` of the new version's `rollout` policy, one of the
    /// plugin's `trait_types`.
    pub strategy: String,
    /// The `rollout` policy's properties, as text by key; read them with [`property`],
    /// [`duration_ms`] and [`choice`].
    ///
    /// [`property`]: Self::property
    /// [`duration_ms`]: Self::duration_ms
    /// [`choice`]: Self::choice
    pub properties: BTreeMap<String, String>,
    /// The step reached so far (0: none yet).
    pub step: u32,
    /// What the current step gives each version.
    pub target: RolloutTarget,
    /// How long the current step has held, in milliseconds.
    pub step_elapsed_ms: u64,
    /// Whether a person promoted the rollout past the current step.
    pub promoted: bool,
    /// What the plugin returned as `memo` last time.
    pub memo: Option<String>,
}

impl RolloutContext {
    /// The property `key` parsed as `T`, or `default` when absent; an unparsable value is an
    /// error naming the key.
    pub fn property<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.properties.get(key) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse()
                .map_err(|e| format!("property `{key}` = `{text}`: {e}")),
        }
    }
}

impl RolloutContext {
    /// The duration property `key` (`500ms`, `30s`, `2m`) in milliseconds, or `default_ms`
    /// when absent; an unreadable one is an error naming the key.
    pub fn duration_ms(&self, key: &str, default_ms: u64) -> Result<u64, String> {
        match self.properties.get(key) {
            None => Ok(default_ms),
            Some(text) => parse_duration_ms(text).map_err(|e| format!("property `{key}`: {e}")),
        }
    }

    /// The property `key` as one of `choices` (the first when absent); another value is an
    /// error naming the choices.
    pub fn choice(&self, key: &str, choices: &[&'static str]) -> Result<&'static str, String> {
        let Some(text) = self.properties.get(key) else {
            return Ok(choices.first().copied().unwrap_or_default());
        };
        choices
            .iter()
            .find(|c| **c == text.trim())
            .copied()
            .ok_or_else(|| {
                format!(
                    "property `{key}` = `{text}`: write {}",
                    choices.join(" or ")
                )
            })
    }
}

/// What a strategy's `check` usually says: nothing when `read` accepts the properties, else
/// its reason as an error with `hint`.
pub fn check_with<T>(
    properties: &BTreeMap<String, String>,
    read: impl FnOnce(&RolloutContext) -> Result<T, String>,
    hint: &str,
) -> Vec<Diagnostic> {
    let ctx = RolloutContext {
        properties: properties.clone(),
        ..RolloutContext::default()
    };
    match read(&ctx) {
        Ok(_) => Vec::new(),
        Err(why) => vec![Diagnostic::error("", why, hint)],
    }
}

/// What the rollout does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutPhase {
    /// Moving, or holding a step while it is analysed.
    Progressing,
    /// Holding until a person promotes; the reason says what to look at.
    WaitingForPromotion(String),
    /// Finished: the new version is the app.
    Done,
    /// Stop and roll back to the old version, with why.
    Abort(String),
}

/// One decision of a rollout plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutDecision {
    /// Whether the rollout moves on, waits for a person, is done or aborts.
    pub phase: RolloutPhase,
    /// The step to be at (ignored for done and abort).
    pub step: u32,
    /// What that step gives each version (ignored for done and abort).
    pub target: RolloutTarget,
    /// What the analysis found, for people.
    pub message: String,
    /// Ask again after this many milliseconds (100 ms to an hour); `None`: at the resync.
    pub recheck_after_ms: Option<u32>,
    /// Handed back as [`RolloutContext::memo`]; at most 4 KiB.
    pub memo: Option<String>,
}

impl RolloutDecision {
    /// Be at `step` with `target`, and look again after `recheck_ms`.
    pub fn go(
        step: u32,
        target: RolloutTarget,
        message: impl Into<String>,
        recheck_ms: u32,
    ) -> Self {
        Self {
            phase: RolloutPhase::Progressing,
            step,
            target,
            message: message.into(),
            recheck_after_ms: Some(recheck_ms),
            memo: None,
        }
    }

    /// Stay where the context is, and look again after `recheck_ms`.
    pub fn hold(ctx: &RolloutContext, message: impl Into<String>, recheck_ms: u32) -> Self {
        Self::go(ctx.step, ctx.target.clone(), message, recheck_ms)
    }

    /// Stay where the context is until a person promotes.
    pub fn wait_for_promotion(ctx: &RolloutContext, why: impl Into<String>) -> Self {
        let why = why.into();
        Self {
            phase: RolloutPhase::WaitingForPromotion(why.clone()),
            message: why,
            ..Self::hold(ctx, "", 1_000)
        }
    }

    /// The rollout is complete.
    pub fn done(ctx: &RolloutContext, message: impl Into<String>) -> Self {
        Self {
            phase: RolloutPhase::Done,
            ..Self::hold(ctx, message, 1_000)
        }
    }

    /// Stop and roll back, with why.
    pub fn abort(ctx: &RolloutContext, why: impl Into<String>) -> Self {
        let why = why.into();
        Self {
            phase: RolloutPhase::Abort(why.clone()),
            message: why,
            ..Self::hold(ctx, "", 1_000)
        }
    }

    /// The same, and get `memo` back next time.
    pub fn remember(mut self, memo: impl Into<String>) -> Self {
        self.memo = Some(memo.into());
        self
    }
}

/// A rollout plugin. Pure: the same context gives the same decision, so it is unit-tested
/// natively (see [`crate::testing::RolloutRun`]).
pub trait Rollout {
    /// Its name and version; `trait_types` lists the strategies it provides (the `type` of a
    /// manifest's `rollout` policy).
    fn describe() -> PluginInfo;
    /// The next step.
    fn step(ctx: &RolloutContext) -> RolloutDecision;
    /// What is wrong with a `rollout` policy's properties (paths relative to them).
    fn check(_strategy: &str, _properties: &BTreeMap<String, String>) -> Vec<Diagnostic> {
        Vec::new()
    }
}

/// Parses a duration as rollout policies write them: `500ms`, `30s`, `2m`, `1h`, or a number
/// of seconds. Returns milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (write e.g. 500ms, 30s, 2m)"))?;
    let scale = match unit.trim() {
        "ms" => 1.0,
        "" | "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use ms, s, m or h)"
            ))
        }
    };
    let ms = number * scale;
    if !ms.is_finite() || ms > u64::MAX as f64 {
        return Err(format!("`{text}` is too long a duration"));
    }
    Ok(ms as u64)
}

/// The analysis every step of a rollout runs on the new version's figures: a rollout stops
/// when the new version fails more requests, or answers slower, than these allow.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// The largest share (0..=1) of failed requests (`max_error_rate`, default 0.05).
    pub max_error_rate: f64,
    /// The slowest p99 in milliseconds (`max_p99_ms`; none by default).
    pub max_p99_ms: Option<f64>,
    /// Fewer requests than this say nothing about errors (`min_requests`, default 5).
    pub min_requests: u64,
}

impl Thresholds {
    /// Reads `max_error_rate`, `max_p99_ms` and `min_requests` from a policy's properties.
    pub fn from_properties(ctx: &RolloutContext) -> Result<Self, String> {
        let max_error_rate: f64 = ctx.property("max_error_rate", 0.05)?;
        if !(0.0..=1.0).contains(&max_error_rate) {
            return Err(format!(
                "property `max_error_rate` = {max_error_rate}: must be between 0 and 1"
            ));
        }
        let max_p99_ms = match ctx.properties.get("max_p99_ms") {
            Some(_) => Some(ctx.property("max_p99_ms", 0.0)?),
            None => None,
        };
        Ok(Self {
            max_error_rate,
            max_p99_ms,
            min_requests: ctx.property("min_requests", 5)?,
        })
    }

    /// Why the figures cross a threshold, or `None` when they pass.
    pub fn judge(&self, figures: &VersionFigures) -> Option<String> {
        if figures.requests >= self.min_requests && figures.requests > 0 {
            let rate = figures.error_rate();
            if rate > self.max_error_rate {
                return Some(format!(
                    "{} failed {} of {} requests ({:.1}%), over the {:.1}% allowed (max_error_rate)",
                    figures.version,
                    figures.failed,
                    figures.requests,
                    rate * 100.0,
                    self.max_error_rate * 100.0
                ));
            }
        }
        match self.max_p99_ms {
            Some(max) if figures.p99_ms > max => Some(format!(
                "{} answers with p99 {:.0} ms, over the {max:.0} ms allowed (max_p99_ms)",
                figures.version, figures.p99_ms
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert_eq!(parse_duration_ms("1.5"), Ok(1_500));
        assert!(parse_duration_ms("soon").is_err());
        assert!(parse_duration_ms("3 days")
            .unwrap_err()
            .contains("unknown unit"));
    }

    #[test]
    fn thresholds_judge_errors_only_past_the_minimum_requests() {
        let t = Thresholds {
            max_error_rate: 0.05,
            max_p99_ms: Some(100.0),
            min_requests: 10,
        };
        let mut f = VersionFigures {
            version: "v2".into(),
            requests: 4,
            failed: 4,
            ..VersionFigures::default()
        };
        assert_eq!(t.judge(&f), None, "4 requests say nothing");
        f.requests = 100;
        f.failed = 6;
        assert!(t.judge(&f).unwrap().contains("6 of 100"));
        f.failed = 5;
        assert_eq!(t.judge(&f), None);
        f.p99_ms = 150.0;
        assert!(t.judge(&f).unwrap().contains("p99 150 ms"));
    }

    #[test]
    fn durations_and_choices_read_from_properties_name_their_key() {
        let ctx = RolloutContext {
            properties: [("pause", "2s"), ("switch", "later")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..RolloutContext::default()
        };
        assert_eq!(ctx.duration_ms("pause", 5), Ok(2_000));
        assert_eq!(ctx.duration_ms("absent", 5), Ok(5));
        assert_eq!(ctx.choice("absent", &["auto", "manual"]), Ok("auto"));
        let wrong = ctx.choice("switch", &["auto", "manual"]).unwrap_err();
        assert!(
            wrong.contains("`switch` = `later`: write auto or manual"),
            "{wrong}"
        );
        let found = check_with(
            &ctx.properties,
            |c| c.choice("switch", &["auto"]),
            "see the docs",
        );
        assert_eq!(found[0].hint, "see the docs");
    }
}
