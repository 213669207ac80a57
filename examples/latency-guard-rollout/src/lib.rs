//! An example custom rollout strategy, `latency-guard`: ramp traffic to the new version in
//! equal steps, and abort when the new version answers slower than the old one did when the
//! rollout began (kept in the memo, so it survives a controller failover). See README.md.

use std::collections::BTreeMap;

use trellis_sdk::rollout::check_with;
use trellis_sdk::{
    Diagnostic, PluginInfo, Rollout, RolloutContext, RolloutDecision, RolloutTarget,
};

/// How often a step is looked at while it holds.
const LOOK_EVERY_MS: u32 = 1_000;

pub struct LatencyGuard;

/// The strategy's properties.
#[derive(Debug, Clone, PartialEq)]
pub struct Guard {
    pub increment: u8,
    pub interval_ms: u64,
    pub max_slowdown: f64,
    pub min_requests: u64,
}

impl Guard {
    pub fn read(ctx: &RolloutContext) -> Result<Self, String> {
        let increment: u8 = ctx.property("increment", 25)?;
        if !(1..=100).contains(&increment) {
            return Err(format!(
                "property `increment` = {increment}: write 1 to 100"
            ));
        }
        let max_slowdown: f64 = ctx.property("max_slowdown", 1.5)?;
        if max_slowdown.is_nan() || max_slowdown < 1.0 {
            return Err(format!(
                "property `max_slowdown` = {max_slowdown}: write 1 or more"
            ));
        }
        Ok(Self {
            increment,
            interval_ms: ctx.duration_ms("interval", 10_000)?,
            max_slowdown,
            min_requests: ctx.property("min_requests", 20)?,
        })
    }

    /// The new version's share at step `n`.
    fn share(&self, n: u32) -> u8 {
        u8::try_from((u32::from(self.increment) * n).min(100)).unwrap_or(100)
    }
}

impl Rollout for LatencyGuard {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "latency-guard".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            trait_types: vec!["latency-guard".into()],
            description: "Ramps traffic to the new version; rolls back when it answers slower \
                          than the old one did"
                .into(),
        }
    }

    fn step(ctx: &RolloutContext) -> RolloutDecision {
        let guard = match Guard::read(ctx) {
            Ok(guard) => guard,
            Err(why) => return RolloutDecision::abort(ctx, why),
        };
        if ctx.step == 0 {
            // The old version's latency before any request goes elsewhere: the baseline.
            let baseline = ctx.old.p99_ms;
            let share = guard.share(1);
            return RolloutDecision::go(
                1,
                RolloutTarget::weighted(share),
                format!("{share}% of requests; baseline p99 {baseline:.0} ms"),
                LOOK_EVERY_MS,
            )
            .remember(format!("{baseline}"));
        }
        let baseline: f64 = ctx
            .memo
            .as_deref()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0.0);
        let keep = |d: RolloutDecision| d.remember(format!("{baseline}"));
        let limit = baseline * guard.max_slowdown;
        if baseline > 0.0 && ctx.new.requests >= guard.min_requests && ctx.new.p99_ms > limit {
            return keep(RolloutDecision::abort(
                ctx,
                format!(
                    "{} answers with p99 {:.0} ms, over {:.1}× the {:.0} ms {} had (max_slowdown)",
                    ctx.new.version, ctx.new.p99_ms, guard.max_slowdown, baseline, ctx.old.version
                ),
            ));
        }
        if !ctx.new.ready() || ctx.step_elapsed_ms < guard.interval_ms {
            let message = format!(
                "{}% of requests; {} p99 {:.0} ms (limit {:.0} ms)",
                ctx.target.traffic, ctx.new.version, ctx.new.p99_ms, limit
            );
            return keep(RolloutDecision::hold(ctx, message, LOOK_EVERY_MS));
        }
        if ctx.target.traffic >= 100 {
            return keep(RolloutDecision::done(
                ctx,
                format!(
                    "{} kept within {:.1}× the baseline",
                    ctx.new.version, guard.max_slowdown
                ),
            ));
        }
        let share = guard.share(ctx.step + 1);
        keep(RolloutDecision::go(
            ctx.step + 1,
            RolloutTarget::weighted(share),
            format!("{share}% of requests"),
            LOOK_EVERY_MS,
        ))
    }

    fn check(_strategy: &str, properties: &BTreeMap<String, String>) -> Vec<Diagnostic> {
        check_with(
            properties,
            Guard::read,
            "see examples/latency-guard-rollout/README.md",
        )
    }
}

trellis_sdk::export_rollout!(LatencyGuard);

#[cfg(test)]
mod tests {
    use trellis_sdk::testing::{properties, RolloutRun};
    use trellis_sdk::RolloutPhase;

    use super::*;

    fn run() -> RolloutRun<LatencyGuard> {
        RolloutRun::<LatencyGuard>::new("latency-guard")
            .property("increment", "40")
            .property("interval", "2s")
    }

    #[test]
    fn ramps_in_equal_steps_to_all_and_is_done() {
        let decisions = run().run(100);
        let mut shares: Vec<u8> = decisions.iter().map(|d| d.target.traffic).collect();
        shares.dedup();
        assert_eq!(shares, vec![40, 80, 100]);
        assert_eq!(decisions.last().unwrap().phase, RolloutPhase::Done);
    }

    #[test]
    fn the_baseline_is_kept_in_the_memo_and_a_slower_new_version_is_rolled_back() {
        let mut run = run();
        let first = run.step();
        assert_eq!(
            first.memo.as_deref(),
            Some("20"),
            "the old version's p99 (20 ms)"
        );
        run.advance(1_000);
        run.new_p99_ms(25.0);
        assert_eq!(
            run.step().phase,
            RolloutPhase::Progressing,
            "25 ms is within 1.5 × 20 ms"
        );
        run.new_p99_ms(31.0);
        run.advance(1_000);
        let decision = run.step();
        assert!(
            matches!(&decision.phase, RolloutPhase::Abort(why) if why.contains("p99 31 ms") && why.contains("20 ms v1 had")),
            "{decision:?}"
        );
        assert_eq!(decision.memo.as_deref(), Some("20"), "kept to the end");
    }

    #[test]
    fn too_few_requests_say_nothing_about_latency() {
        let mut run = run().property("min_requests", "100000");
        run.step();
        run.new_p99_ms(500.0);
        run.advance(1_000);
        assert_eq!(run.step().phase, RolloutPhase::Progressing);
    }

    #[test]
    fn bad_properties_are_reported() {
        let found = LatencyGuard::check("latency-guard", &properties(&[("increment", "0")]));
        assert!(found[0].message.contains("1 to 100"), "{found:?}");
        let found = LatencyGuard::check("latency-guard", &properties(&[("max_slowdown", "0.5")]));
        assert!(found[0].message.contains("1 or more"), "{found:?}");
        assert!(
            LatencyGuard::check("latency-guard", &properties(&[("interval", "1m")])).is_empty()
        );
    }
}
