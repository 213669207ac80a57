//! The wasm side of a [`Rollout`]: the generated `rollout-api` export and the conversions
//! between its WIT records and the SDK's types. Only compiled for `wasm32`.

use std::marker::PhantomData;

use crate::bindings::rollout::exports::trellis::plugin::rollout_api as api;
use crate::bindings::scaler::trellis::plugin::types as wit;
use crate::rollout::{
    HostSplit, Rollout, RolloutContext, RolloutPhase, RolloutTarget, VersionFigures,
};
use crate::types::Diagnostic;

/// The type [`export_rollout!`](crate::export_rollout) exports.
pub struct RolloutExport<T>(PhantomData<T>);

impl<T: Rollout> api::Guest for RolloutExport<T> {
    fn describe() -> wit::PluginInfo {
        T::describe().into()
    }

    fn step(ctx: api::RolloutContext) -> api::RolloutDecision {
        let ctx = match context(ctx) {
            Ok(ctx) => ctx,
            Err(why) => {
                return api::RolloutDecision {
                    phase: api::RolloutPhase::Abort(why.clone()),
                    step: 0,
                    target: target_to_wit(RolloutTarget::start()),
                    message: why,
                    recheck_after_ms: None,
                    memo: None,
                }
            }
        };
        let d = T::step(&ctx);
        api::RolloutDecision {
            phase: match d.phase {
                RolloutPhase::Progressing => api::RolloutPhase::Progressing,
                RolloutPhase::WaitingForPromotion(why) => {
                    api::RolloutPhase::WaitingForPromotion(why)
                }
                RolloutPhase::Done => api::RolloutPhase::Done,
                RolloutPhase::Abort(why) => api::RolloutPhase::Abort(why),
            },
            step: d.step,
            target: target_to_wit(d.target),
            message: d.message,
            recheck_after_ms: d.recheck_after_ms,
            memo: d.memo,
        }
    }

    fn check(strategy: String, properties: String) -> Vec<wit::Diagnostic> {
        let found = match serde_json::from_str(&properties) {
            Ok(properties) => T::check(&strategy, &properties),
            Err(e) => vec![Diagnostic::error(
                "",
                format!("the rollout policy's properties are not a JSON object of strings: {e}"),
                "",
            )],
        };
        found.into_iter().map(Into::into).collect()
    }
}

fn context(c: api::RolloutContext) -> Result<RolloutContext, String> {
    let properties = serde_json::from_str(&c.properties).map_err(|e| {
        format!("the rollout policy's properties are not a JSON object of strings: {e}")
    })?;
    Ok(RolloutContext {
        app: c.app,
        old: figures(c.old),
        new: figures(c.new),
        strategy: c.strategy,
        properties,
        step: c.step,
        target: target_from_wit(c.target),
        step_elapsed_ms: c.step_elapsed_ms,
        promoted: c.promoted,
        memo: c.memo,
    })
}

fn figures(f: api::VersionFigures) -> VersionFigures {
    VersionFigures {
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

fn target_from_wit(t: api::RolloutTarget) -> RolloutTarget {
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

fn target_to_wit(t: RolloutTarget) -> api::RolloutTarget {
    api::RolloutTarget {
        traffic: t.traffic,
        new_instances: t.new_instances,
        old_instances: t.old_instances,
        hosts: t.hosts.map(|h| api::HostSplit {
            label: h.label,
            new_values: h.new_values,
            old_values: h.old_values,
        }),
    }
}
