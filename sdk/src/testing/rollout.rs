//! A rollout run without a controller: [`RolloutRun`] calls a [`Rollout`] plugin's `step` the
//! way the controller does (keeping the step, its target, how long it has held, promotion and
//! the memo between calls) over a staged app whose figures follow each step's target.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use crate::rollout::{
    Rollout, RolloutContext, RolloutDecision, RolloutPhase, RolloutTarget, VersionFigures,
};

/// The seconds of traffic the figures cover, as the hosts' traffic window does.
const WINDOW_SECONDS: f64 = 10.0;

/// A staged rollout of one app from `v1` to `v2`, driven by plugin `P`.
///
/// ```
/// # use trellis_sdk::*;
/// # use trellis_sdk::testing::RolloutRun;
/// # struct AllAtOnce;
/// # impl Rollout for AllAtOnce {
/// #     fn describe() -> PluginInfo { PluginInfo { name: "x".into(), version: "0".into(), trait_types: vec![], description: String::new() } }
/// #     fn step(ctx: &RolloutContext) -> RolloutDecision {
/// #         if ctx.step == 0 { RolloutDecision::go(1, RolloutTarget::weighted(100), "all", 1000) }
/// #         else { RolloutDecision::done(ctx, "done") }
/// #     }
/// # }
/// let mut run = RolloutRun::<AllAtOnce>::new("all-at-once");
/// let decisions = run.run(10);
/// assert_eq!(decisions.last().unwrap().phase, RolloutPhase::Done);
/// ```
pub struct RolloutRun<P> {
    ctx: RolloutContext,
    /// Instances the manifests ask for.
    instances: u32,
    /// Requests per second the app gets, split by the step's traffic share.
    load: f64,
    new_error_rate: f64,
    new_p99_ms: f64,
    new_ready: bool,
    plugin: PhantomData<P>,
}

impl<P: Rollout> RolloutRun<P> {
    /// A rollout by `strategy`, at step 0, of an app that asks for 4 instances and gets 100
    /// requests per second, whose new version answers as well and as fast as the old one.
    pub fn new(strategy: &str) -> Self {
        let mut run = Self {
            ctx: RolloutContext {
                app: "app".into(),
                strategy: strategy.into(),
                target: RolloutTarget::start(),
                ..RolloutContext::default()
            },
            instances: 4,
            load: 100.0,
            new_error_rate: 0.0,
            new_p99_ms: 20.0,
            new_ready: true,
            plugin: PhantomData,
        };
        run.ctx.old.version = "v1".into();
        run.ctx.new.version = "v2".into();
        run.refresh();
        run
    }

    /// Sets a property of the `rollout` policy.
    pub fn property(mut self, key: &str, value: &str) -> Self {
        self.ctx.properties.insert(key.into(), value.into());
        self
    }

    /// How many instances the manifests ask for.
    pub fn instances(mut self, instances: u32) -> Self {
        self.instances = instances;
        self.refresh();
        self
    }

    /// From now on, this share (0..=1) of the new version's requests fail.
    pub fn new_errors(&mut self, rate: f64) -> &mut Self {
        self.new_error_rate = rate;
        self.refresh();
        self
    }

    /// From now on, the new version's p99 latency.
    pub fn new_p99_ms(&mut self, ms: f64) -> &mut Self {
        self.new_p99_ms = ms;
        self.refresh();
        self
    }

    /// From now on, whether the new version's instances start (they do by default).
    pub fn new_ready(&mut self, ready: bool) -> &mut Self {
        self.new_ready = ready;
        self.refresh();
        self
    }

    /// Lets `ms` pass.
    pub fn advance(&mut self, ms: u64) -> &mut Self {
        self.ctx.step_elapsed_ms += ms;
        self
    }

    /// A person promotes the rollout past its current step.
    pub fn promote(&mut self) -> &mut Self {
        self.ctx.promoted = true;
        self
    }

    /// The context the next call gets.
    pub fn context(&self) -> &RolloutContext {
        &self.ctx
    }

    /// Calls the plugin once and applies its decision as the controller does: a new step (or
    /// target) starts its clock again and clears the promotion; the memo is kept.
    pub fn step(&mut self) -> RolloutDecision {
        let decision = P::step(&self.ctx);
        let moved = decision.step != self.ctx.step || decision.target != self.ctx.target;
        if matches!(
            decision.phase,
            RolloutPhase::Progressing | RolloutPhase::WaitingForPromotion(_)
        ) && moved
        {
            self.ctx.step = decision.step;
            self.ctx.target = decision.target.clone();
            self.ctx.step_elapsed_ms = 0;
            self.ctx.promoted = false;
        }
        self.ctx.memo = decision.memo.clone();
        self.refresh();
        decision
    }

    /// Steps until the plugin is done, aborts or waits for a person, or `max_calls` calls;
    /// between calls, lets pass what each decision asked (1 s when it asked nothing).
    pub fn run(&mut self, max_calls: usize) -> Vec<RolloutDecision> {
        let mut decisions = Vec::new();
        for _ in 0..max_calls {
            let decision = self.step();
            let wait = decision.recheck_after_ms.unwrap_or(1_000);
            let settled = !matches!(decision.phase, RolloutPhase::Progressing);
            decisions.push(decision);
            if settled {
                break;
            }
            self.advance(u64::from(wait));
        }
        decisions
    }

    /// The figures of both versions for the current target.
    fn refresh(&mut self) {
        let target = &self.ctx.target;
        let share = |percent: u8| scaled(self.instances, percent);
        let requests =
            |percent: u8| (self.load * f64::from(percent) / 100.0 * WINDOW_SECONDS) as u64;
        let new_wanted = share(target.new_instances);
        let new_requests = if self.new_ready {
            requests(target.traffic)
        } else {
            0
        };
        self.ctx.new = VersionFigures {
            version: self.ctx.new.version.clone(),
            instances: if self.new_ready { new_wanted } else { 0 },
            wanted: new_wanted,
            requests_per_second: new_requests as f64 / WINDOW_SECONDS,
            requests: new_requests,
            failed: (new_requests as f64 * self.new_error_rate) as u64,
            p99_ms: if new_requests > 0 {
                self.new_p99_ms
            } else {
                0.0
            },
            on_unhealthy_hosts: 0,
        };
        let old_wanted = share(target.old_instances);
        let old_requests = requests(100 - target.traffic.min(100));
        self.ctx.old = VersionFigures {
            version: self.ctx.old.version.clone(),
            instances: old_wanted,
            wanted: old_wanted,
            requests_per_second: old_requests as f64 / WINDOW_SECONDS,
            requests: old_requests,
            failed: 0,
            p99_ms: if old_requests > 0 { 20.0 } else { 0.0 },
            on_unhealthy_hosts: 0,
        };
    }
}

/// `percent` of `instances`, rounded, and at least one when the share is not zero: what the
/// controller runs of a version at a step.
pub fn scaled(instances: u32, percent: u8) -> u32 {
    if percent == 0 || instances == 0 {
        return 0;
    }
    let exact = u64::from(instances) * u64::from(percent.min(100));
    (((exact + 50) / 100) as u32).max(1)
}

/// Properties from pairs, for [`Rollout::check`] in tests.
pub fn properties(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
