//! The built-in `blue-green` rollout: the new version starts beside the old one at full size
//! with no traffic; once every new instance runs (and, with `switch: manual`, a person
//! promotes), all HTTP requests switch to it at once. The old version stays running, ready,
//! for `keep_old_for`: a rollback in that window (automatic when the new version crosses
//! `max_error_rate` or `max_p99_ms`, or `trellis app rollout abort`) switches the traffic back
//! at once. Then the old version is removed.

use std::collections::BTreeMap;

use trellis_sdk::rollout::{check_with, Thresholds};
use trellis_sdk::{
    Diagnostic, PluginInfo, Rollout, RolloutContext, RolloutDecision, RolloutTarget,
};

/// How long the old version stays ready after the switch when the policy says nothing.
const DEFAULT_KEEP_OLD_MS: u64 = 60_000;
/// How long the new version may take to start before the rollout gives up.
const DEFAULT_READY_WITHIN_MS: u64 = 120_000;
/// How often the new version is analysed.
const ANALYSIS_EVERY_MS: u32 = 1_000;

/// Step 1: the new version beside the old, no traffic.
fn beside() -> RolloutTarget {
    RolloutTarget {
        traffic: 0,
        new_instances: 100,
        old_instances: 100,
        hosts: None,
    }
}

/// Step 2: every request to the new version, the old one still running.
fn switched() -> RolloutTarget {
    RolloutTarget {
        traffic: 100,
        ..beside()
    }
}

pub struct BlueGreen;

struct Plan {
    keep_old_ms: u64,
    ready_within_ms: u64,
    manual: bool,
    thresholds: Thresholds,
}

fn plan(ctx: &RolloutContext) -> Result<Plan, String> {
    Ok(Plan {
        keep_old_ms: ctx.duration_ms("keep_old_for", DEFAULT_KEEP_OLD_MS)?,
        ready_within_ms: ctx.duration_ms("ready_within", DEFAULT_READY_WITHIN_MS)?,
        manual: ctx.choice("switch", &["auto", "manual"])? == "manual",
        thresholds: Thresholds::from_properties(ctx)?,
    })
}

impl Rollout for BlueGreen {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "blue-green".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            trait_types: vec!["blue-green".into()],
            description: "Starts the new version beside the old, switches all traffic when it \
                          is ready, keeps the old ready for an instant rollback"
                .into(),
        }
    }

    fn step(ctx: &RolloutContext) -> RolloutDecision {
        let plan = match plan(ctx) {
            Ok(plan) => plan,
            Err(why) => return RolloutDecision::abort(ctx, why),
        };
        match ctx.step {
            0 => RolloutDecision::go(
                1,
                beside(),
                format!("starting {} beside {}", ctx.new.version, ctx.old.version),
                ANALYSIS_EVERY_MS,
            ),
            1 => {
                if !ctx.new.ready() {
                    if ctx.step_elapsed_ms >= plan.ready_within_ms {
                        return RolloutDecision::abort(
                            ctx,
                            format!(
                                "{} of {} instances of {} run after {} s (ready_within)",
                                ctx.new.instances,
                                ctx.new.wanted,
                                ctx.new.version,
                                ctx.step_elapsed_ms / 1000
                            ),
                        );
                    }
                    return RolloutDecision::hold(
                        ctx,
                        format!(
                            "{} of {} instances of {} run",
                            ctx.new.instances, ctx.new.wanted, ctx.new.version
                        ),
                        ANALYSIS_EVERY_MS,
                    );
                }
                if plan.manual && !ctx.promoted {
                    return RolloutDecision::wait_for_promotion(
                        ctx,
                        format!(
                            "{} is ready beside {}; promote to switch",
                            ctx.new.version, ctx.old.version
                        ),
                    );
                }
                RolloutDecision::go(
                    2,
                    switched(),
                    format!(
                        "switched every request to {}; {} kept ready",
                        ctx.new.version, ctx.old.version
                    ),
                    ANALYSIS_EVERY_MS,
                )
            }
            _ => {
                if let Some(why) = plan.thresholds.judge(&ctx.new) {
                    return RolloutDecision::abort(ctx, format!("after the switch: {why}"));
                }
                if ctx.step_elapsed_ms >= plan.keep_old_ms {
                    return RolloutDecision::done(
                        ctx,
                        format!(
                            "{} served {} s without crossing a threshold",
                            ctx.new.version,
                            plan.keep_old_ms / 1000
                        ),
                    );
                }
                let left = plan.keep_old_ms - ctx.step_elapsed_ms;
                RolloutDecision::hold(
                    ctx,
                    format!(
                        "{} serves every request ({:.1}% failed); {} kept ready for {:.0} s more",
                        ctx.new.version,
                        ctx.new.error_rate() * 100.0,
                        ctx.old.version,
                        (left as f64 / 1000.0).ceil()
                    ),
                    u32::try_from(left)
                        .unwrap_or(u32::MAX)
                        .clamp(100, ANALYSIS_EVERY_MS),
                )
            }
        }
    }

    fn check(_strategy: &str, properties: &BTreeMap<String, String>) -> Vec<Diagnostic> {
        check_with(
            properties,
            plan,
            "see docs/rollouts.md for blue-green's properties",
        )
    }
}

trellis_sdk::export_rollout!(BlueGreen);

#[cfg(test)]
mod tests {
    use trellis_sdk::testing::{properties, RolloutRun};
    use trellis_sdk::RolloutPhase;

    use super::*;

    fn run() -> RolloutRun<BlueGreen> {
        RolloutRun::<BlueGreen>::new("blue-green").property("keep_old_for", "10s")
    }

    #[test]
    fn starts_beside_switches_when_ready_and_keeps_the_old_ready() {
        let decisions = run().run(100);
        let mut targets: Vec<(u32, u8, u8, u8)> = decisions
            .iter()
            .map(|d| {
                (
                    d.step,
                    d.target.traffic,
                    d.target.new_instances,
                    d.target.old_instances,
                )
            })
            .collect();
        targets.dedup();
        assert_eq!(targets, vec![(1, 0, 100, 100), (2, 100, 100, 100)]);
        assert_eq!(decisions.last().unwrap().phase, RolloutPhase::Done);
    }

    #[test]
    fn no_switch_until_every_new_instance_runs() {
        let mut run = run();
        run.new_ready(false);
        run.step();
        run.advance(5_000);
        assert_eq!(run.step().step, 1);
        run.new_ready(true);
        assert_eq!(run.step().step, 2);
    }

    #[test]
    fn a_failing_new_version_is_switched_back_within_the_keep_window() {
        let mut run = run();
        run.step();
        run.step();
        run.new_errors(0.3);
        run.advance(1_000);
        assert!(
            matches!(run.step().phase, RolloutPhase::Abort(why) if why.contains("after the switch"))
        );
    }

    #[test]
    fn manual_switch_waits_for_promotion() {
        let mut run = run().property("switch", "manual");
        run.step();
        assert!(matches!(
            run.step().phase,
            RolloutPhase::WaitingForPromotion(_)
        ));
        run.promote();
        assert_eq!(run.step().target.traffic, 100);
    }

    #[test]
    fn bad_properties_are_reported() {
        assert!(
            BlueGreen::check("blue-green", &properties(&[("switch", "now")]))[0]
                .message
                .contains("auto")
        );
        assert!(BlueGreen::check("blue-green", &properties(&[("keep_old_for", "1m")])).is_empty());
    }
}
