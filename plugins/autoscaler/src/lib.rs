//! The built-in `autoscaler` scaler: a component's instances follow its traffic, as the hosts
//! measure it (contract 0.2.0's `component-traffic`), between a minimum and a maximum.
//!
//! ```yaml
//! traits:
//!   - type: autoscaler
//!     properties:
//!       min_instances: 0              # 0: sleep when idle (default 1)
//!       max_instances: 10
//!       target_in_flight: 4           # per instance; or target_requests_per_second: 50
//!       scale_up_cooldown_seconds: 5  # default 5
//!       scale_down_cooldown_seconds: 30   # default 30
//!       requirements: {zone: a}       # labels a host must carry (optional)
//! ```
//!
//! Instances wanted = the load over the target, rounded up, within the bounds, and at least
//! one while a request is in flight or waiting. Up: at once from zero, else at most once per
//! up cooldown. Down: once traffic has asked for fewer for the whole down cooldown. The times
//! are kept in the scaler's memo; without one (a restarted controller) the down cooldown starts
//! afresh, so nothing is removed early. It looks again every second while it may scale
//! (`recheck-after-ms`). New instances go where the placement ranks best; instances go from
//! the hosts that run the most. With `min_instances: 0`, a node's HTTP server holds the first
//! request while an instance starts (docs/autoscaling.md).

mod policy;

use std::collections::BTreeMap;

use trellis_sdk::{
    diff, Command, Diagnostic, Lattice, PlacementRequest, PluginInfo, Reconciled, Scaler,
    ScalerContext, Status,
};

pub use policy::{decide, wanted, Decision, Load, Memo, Properties, EVALUATE_MS, MAX_INSTANCES};

pub struct Autoscaler;

impl Scaler for Autoscaler {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "autoscaler".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            trait_types: vec!["autoscaler".into()],
            description: "Instances follow traffic (in flight or per second per instance), \
                          between a minimum (0: sleep when idle) and a maximum, with cooldowns"
                .into(),
        }
    }

    fn reconcile(ctx: &ScalerContext, lattice: &dyn Lattice) -> Reconciled {
        let properties = match ctx.properties::<Properties>() {
            Ok(p) => p,
            Err(e) => return Reconciled::failed(e.to_string()),
        };
        if let Some((path, message, _)) = policy::problems(&properties).into_iter().next() {
            return Reconciled::failed(format!("autoscaler `{path}`: {message}"));
        }
        let spec = &ctx.component;
        let running = diff::running(&ctx.app, spec, lattice);
        let current: u32 = running.counts.values().sum();
        let load = lattice
            .component_traffic(&spec.id)
            .iter()
            .fold(Load::default(), |sum, t| Load {
                in_flight: sum.in_flight + f64::from(t.in_flight),
                requests_per_second: sum.requests_per_second + t.requests_per_second,
            });
        let memo = Memo::decode(ctx.memo.as_deref());
        let decision = decide(&properties, current, load, memo, lattice.now_ms());
        let request = PlacementRequest {
            component_id: spec.id.clone(),
            requirements: properties.requirements.clone(),
        };
        let desired = match place(&running.counts, decision.instances, &request, lattice) {
            Ok(desired) => desired,
            Err(why) => {
                return Reconciled::new(Vec::new(), Status::Waiting(why))
                    .remember(decision.memo.encode())
            }
        };
        let commands = diff::converge(spec, &desired, &running);
        let status = if commands.is_empty() {
            Status::Deployed
        } else {
            Status::Reconciling(format!(
                "scaling '{}' from {current} to {} instances: {}",
                spec.name, decision.instances, decision.why
            ))
        };
        let mut reconciled = Reconciled::new(commands, status).remember(decision.memo.encode());
        if let Some(ms) = decision.recheck_ms {
            reconciled = reconciled.recheck_after(std::time::Duration::from_millis(ms));
        }
        reconciled
    }

    fn cleanup(ctx: &ScalerContext, lattice: &dyn Lattice) -> Vec<Command> {
        diff::remove_all(ctx, lattice)
    }

    fn check(ctx: &ScalerContext) -> Vec<Diagnostic> {
        match ctx.properties::<Properties>() {
            Err(e) => vec![e.to_diagnostic()],
            Ok(p) => policy::problems(&p)
                .into_iter()
                .map(|(path, message, hint)| Diagnostic::error(path, message, hint))
                .collect(),
        }
    }
}

/// Host → instances for `total` instances, starting from what runs: new ones where the
/// placement ranks best (round the ranking), removed ones from the hosts running the most.
fn place(
    running: &BTreeMap<String, u32>,
    total: u32,
    request: &PlacementRequest,
    lattice: &dyn Lattice,
) -> Result<BTreeMap<String, u32>, String> {
    let mut desired = running.clone();
    let current: u32 = running.values().sum();
    if total > current {
        let add = (total - current) as usize;
        let ranking = lattice.rank_at_least(request, add);
        if ranking.is_empty() {
            return Err(format!(
                "no host can take an instance of '{}'{}",
                request.component_id,
                if request.requirements.is_empty() {
                    String::new()
                } else {
                    format!(
                        " with labels {}",
                        trellis_sdk::labels::describe(&request.requirements)
                    )
                }
            ));
        }
        for host in ranking.iter().cycle().take(add) {
            *desired.entry(host.clone()).or_insert(0) += 1;
        }
    }
    for _ in total..current {
        // The host running the most; of equals, the last by id (first ones stay stable).
        let Some(host) = desired
            .iter()
            .filter(|(_, &n)| n > 0)
            .max_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(b.0)))
            .map(|(h, _)| h.clone())
        else {
            break;
        };
        if let Some(n) = desired.get_mut(&host) {
            *n -= 1;
        }
    }
    Ok(desired)
}

trellis_sdk::export_scaler!(Autoscaler);

#[cfg(test)]
mod tests;
