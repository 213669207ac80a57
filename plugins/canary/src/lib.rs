//! The built-in `canary` rollout: moves an app to its new version in steps, by weight
//! (`steps: "10,50,100"`: that share of instances and of HTTP requests) or by host label
//! (`by_label: region`, `order: "eu,us,ap"`: one region after another), holding each step for
//! `pause` while the new version's figures are checked against `max_error_rate`,
//! `max_p99_ms` and `min_requests`. A step whose figures cross a threshold aborts the rollout,
//! and the controller rolls back to the old version. With `promotion: manual`, each step past
//! its pause waits for `trellis app rollout promote`.
//!
//! Each step is held until its new instances run (at most `ready_within`, else it aborts):
//! a canary that cannot start is a failed canary.

use std::collections::BTreeMap;

use trellis_sdk::rollout::{check_with, HostSplit, Thresholds};
use trellis_sdk::{
    Diagnostic, PluginInfo, Rollout, RolloutContext, RolloutDecision, RolloutTarget,
};

/// The steps when the policy gives none: a fifth, half, all.
const DEFAULT_STEPS: &[u8] = &[20, 50, 100];
/// How long each step holds when the policy says nothing: long enough for the hosts' 10 s
/// traffic window to fill with the new version's requests.
const DEFAULT_PAUSE_MS: u64 = 30_000;
/// How long a step waits for its new instances to run before it gives up.
const DEFAULT_READY_WITHIN_MS: u64 = 120_000;
/// How often a step is analysed while it holds.
const ANALYSIS_EVERY_MS: u32 = 1_000;

pub struct Canary;

/// The canary's properties, read from the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// One target per step, the last one all on the new version.
    pub steps: Vec<RolloutTarget>,
    pub pause_ms: u64,
    pub ready_within_ms: u64,
    pub manual: bool,
    pub thresholds: Thresholds,
}

impl Plan {
    pub fn read(ctx: &RolloutContext) -> Result<Self, String> {
        let steps = match (ctx.properties.get("by_label"), ctx.properties.get("order")) {
            (Some(label), Some(order)) => by_label(label, order)?,
            (Some(_), None) | (None, Some(_)) => {
                return Err("`by_label` and `order` go together: the label and its values in the order to roll out, e.g. by_label: region, order: \"eu,us\"".into())
            }
            (None, None) => by_weight(ctx.properties.get("steps").map(String::as_str))?,
        };
        Ok(Self {
            steps,
            pause_ms: ctx.duration_ms("pause", DEFAULT_PAUSE_MS)?,
            ready_within_ms: ctx.duration_ms("ready_within", DEFAULT_READY_WITHIN_MS)?,
            manual: ctx.choice("promotion", &["auto", "manual"])? == "manual",
            thresholds: Thresholds::from_properties(ctx)?,
        })
    }

    /// The target of step `n` (1-based).
    fn target(&self, n: u32) -> Option<&RolloutTarget> {
        self.steps.get((n as usize).checked_sub(1)?)
    }
}

/// `"10,50,100"`: percentages rising to 100 (added when missing).
fn by_weight(steps: Option<&str>) -> Result<Vec<RolloutTarget>, String> {
    let mut weights: Vec<u8> = match steps {
        None => DEFAULT_STEPS.to_vec(),
        Some(text) => text
            .split(',')
            .map(|w| {
                let w = w.trim().trim_end_matches('%');
                w.parse::<u8>()
                    .ok()
                    .filter(|w| (1..=100).contains(w))
                    .ok_or_else(|| {
                        format!("property `steps`: `{w}` is not a percentage from 1 to 100")
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    if weights.windows(2).any(|w| w[0] >= w[1]) {
        return Err("property `steps`: the percentages must rise, e.g. \"10,50,100\"".into());
    }
    if weights.last() != Some(&100) {
        weights.push(100);
    }
    Ok(weights.into_iter().map(RolloutTarget::weighted).collect())
}

/// One step per label value: the new version on the values so far, the old on the rest, each
/// with the share of instances and requests the values so far are of all.
fn by_label(label: &str, order: &str) -> Result<Vec<RolloutTarget>, String> {
    let values: Vec<String> = order
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    if values.is_empty() || label.trim().is_empty() {
        return Err("properties `by_label` and `order` name a label and at least one value".into());
    }
    let count = values.len();
    Ok((1..=count)
        .map(|done| {
            let percent = u8::try_from(done * 100 / count).unwrap_or(100);
            RolloutTarget {
                hosts: (done < count).then(|| HostSplit {
                    label: label.trim().to_string(),
                    new_values: values[..done].to_vec(),
                    old_values: values[done..].to_vec(),
                }),
                ..RolloutTarget::weighted(percent)
            }
        })
        .collect())
}

impl Rollout for Canary {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "canary".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            trait_types: vec!["canary".into()],
            description: "Moves an app to its new version in steps by weight or host label, \
                          analyses each step and rolls back when the new version fails"
                .into(),
        }
    }

    fn step(ctx: &RolloutContext) -> RolloutDecision {
        let plan = match Plan::read(ctx) {
            Ok(plan) => plan,
            Err(why) => return RolloutDecision::abort(ctx, why),
        };
        let Some(target) = plan.target(ctx.step) else {
            // Not started (or past the plan, after the policy changed): the first step.
            let first = plan.steps[0].clone();
            let message = format!("step 1 of {}: {}", plan.steps.len(), describe(&first));
            return RolloutDecision::go(1, first, message, ANALYSIS_EVERY_MS);
        };
        let of = plan.steps.len();
        if ctx.target != *target {
            // The stored target is not this step's (the policy changed): apply it again.
            return RolloutDecision::go(
                ctx.step,
                target.clone(),
                "re-applying the step",
                ANALYSIS_EVERY_MS,
            );
        }
        if let Some(why) = plan.thresholds.judge(&ctx.new) {
            return RolloutDecision::abort(ctx, format!("step {} of {of}: {why}", ctx.step));
        }
        if !ctx.new.ready() {
            if ctx.step_elapsed_ms >= plan.ready_within_ms {
                return RolloutDecision::abort(
                    ctx,
                    format!(
                        "step {} of {of}: {} of {} instances of {} run after {} s (ready_within)",
                        ctx.step,
                        ctx.new.instances,
                        ctx.new.wanted,
                        ctx.new.version,
                        ctx.step_elapsed_ms / 1000
                    ),
                );
            }
            let message = format!(
                "step {} of {of}: waiting for {} of {} instances of {}",
                ctx.step,
                ctx.new.wanted.saturating_sub(ctx.new.instances),
                ctx.new.wanted,
                ctx.new.version
            );
            return RolloutDecision::hold(ctx, message, ANALYSIS_EVERY_MS);
        }
        let figures = format!(
            "{} answers {:.1} requests/s, {:.1}% failed, p99 {:.0} ms",
            ctx.new.version,
            ctx.new.requests_per_second,
            ctx.new.error_rate() * 100.0,
            ctx.new.p99_ms
        );
        if ctx.step_elapsed_ms < plan.pause_ms {
            let left = plan.pause_ms - ctx.step_elapsed_ms;
            let message = format!(
                "step {} of {of} ({}): {figures}; next in {:.0} s",
                ctx.step,
                describe(target),
                (left as f64 / 1000.0).ceil()
            );
            let recheck = u32::try_from(left)
                .unwrap_or(u32::MAX)
                .min(ANALYSIS_EVERY_MS);
            return RolloutDecision::hold(ctx, message, recheck.max(100));
        }
        if plan.manual && !ctx.promoted {
            return RolloutDecision::wait_for_promotion(
                ctx,
                format!(
                    "step {} of {of} ({}) passed: {figures}; promote to go on",
                    ctx.step,
                    describe(target)
                ),
            );
        }
        match plan.target(ctx.step + 1) {
            Some(next) => RolloutDecision::go(
                ctx.step + 1,
                next.clone(),
                format!("step {} of {of}: {}", ctx.step + 1, describe(next)),
                ANALYSIS_EVERY_MS,
            ),
            None => RolloutDecision::done(ctx, format!("every step passed: {figures}")),
        }
    }

    fn check(_strategy: &str, properties: &BTreeMap<String, String>) -> Vec<Diagnostic> {
        check_with(
            properties,
            Plan::read,
            "see docs/rollouts.md for the canary's properties",
        )
    }
}

/// `20% of requests` or `20% of requests, on region=eu`.
fn describe(target: &RolloutTarget) -> String {
    match &target.hosts {
        Some(split) => format!(
            "{}% of requests, new version on {}={}",
            target.traffic,
            split.label,
            split.new_values.join(",")
        ),
        None => format!("{}% of requests", target.traffic),
    }
}

trellis_sdk::export_rollout!(Canary);

#[cfg(test)]
mod tests;
