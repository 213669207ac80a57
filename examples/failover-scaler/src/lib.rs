//! `failover`: an example of a custom trellis scaler, a policy wadm cannot express.
//!
//! A component runs `instances` instances, all in the *first* tier of hosts (by label
//! requirements) that has a host; the next tiers are standbys. When the preferred tier loses
//! its hosts, the instances move to the next tier; when it comes back, they move back. Moves
//! are make-before-break: the old tier keeps its instances until the new tier runs all of
//! its own, so the component never drops to zero on the way.
//!
//! ```yaml
//! traits:
//!   - type: failover
//!     properties:
//!       instances: 2
//!       tiers:
//!         - name: primary
//!           requirements: { region: east }
//!         - name: standby
//!           requirements: { region: west }
//! ```
//!
//! wadm's spreadscaler splits instances over every spread by weight at all times; it has no
//! notion of "only if the better place is gone".

use std::collections::BTreeMap;

use serde::Deserialize;
use trellis_sdk::spread::distribute;
use trellis_sdk::{
    diff, labels, Command, Diagnostic, Labels, Lattice, PlacementRequest, PluginInfo, Reconciled,
    Scaler, ScalerContext, Status,
};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverProperties {
    pub instances: u32,
    /// Groups of hosts in order of preference.
    pub tiers: Vec<Tier>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub name: String,
    #[serde(default)]
    pub requirements: Labels,
}

pub struct Failover;

impl Scaler for Failover {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "failover".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            trait_types: vec!["failover".into()],
            description: "Runs a component in the first tier of hosts that has one; fails over \
                          to the next and back"
                .into(),
        }
    }

    fn reconcile(ctx: &ScalerContext, lattice: &dyn Lattice) -> Reconciled {
        let properties = match ctx.properties::<FailoverProperties>() {
            Ok(p) => p,
            Err(e) => return Reconciled::failed(e.to_string()),
        };
        let spec = &ctx.component;
        let mut now = diff::running(&ctx.app, spec, lattice);
        now.counts.retain(|host, _| lattice.host(host).is_some());

        // The first tier with a host is where the instances belong.
        let Some((tier, ranking)) = properties.tiers.iter().find_map(|tier| {
            let ranking = lattice.rank_hosts(&PlacementRequest {
                component_id: spec.id.clone(),
                requirements: tier.requirements.clone(),
            });
            (!ranking.is_empty()).then_some((tier, ranking))
        }) else {
            return Reconciled::failed(format!(
                "no host matches any tier ({})",
                properties
                    .tiers
                    .iter()
                    .map(|t| format!("'{}': {}", t.name, labels::describe(&t.requirements)))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        };

        // What already runs in the chosen tier stays there.
        let in_tier: BTreeMap<String, usize> = now
            .counts
            .iter()
            .filter(|(host, _)| {
                lattice
                    .host(host)
                    .is_some_and(|h| labels::matches(&h.labels, &tier.requirements))
            })
            .map(|(h, &n)| (h.clone(), n as usize))
            .collect();
        let placed = distribute(properties.instances as usize, &ranking, &in_tier, None);
        let mut desired: BTreeMap<String, u32> =
            placed.iter().map(|(h, &n)| (h.clone(), n as u32)).collect();
        let tier_ready = in_tier == placed;
        if !tier_ready {
            // Make before break: instances elsewhere keep running until the tier is complete.
            for (host, &n) in &now.counts {
                if !desired.contains_key(host) {
                    desired.insert(host.clone(), n);
                }
            }
        }
        let commands = diff::converge(spec, &desired, &now);
        let status = if commands.is_empty() && tier_ready {
            Status::Deployed
        } else {
            Status::Reconciling(format!(
                "moving '{}' to tier '{}' ({} of {} instances there)",
                spec.name,
                tier.name,
                in_tier.values().sum::<usize>(),
                properties.instances
            ))
        };
        Reconciled::new(commands, status)
    }

    fn cleanup(ctx: &ScalerContext, lattice: &dyn Lattice) -> Vec<Command> {
        diff::remove_all(ctx, lattice)
    }

    fn check(ctx: &ScalerContext) -> Vec<Diagnostic> {
        let mut found = ctx.check_properties::<FailoverProperties>();
        if let Ok(p) = ctx.properties::<FailoverProperties>() {
            if p.tiers.is_empty() {
                found.push(Diagnostic::error(
                    "tiers",
                    "a failover needs at least one tier",
                    "list tiers in order of preference, each with `name` and `requirements`",
                ));
            }
        }
        found
    }
}

trellis_sdk::export_scaler!(Failover);

#[cfg(test)]
mod tests {
    use trellis_sdk::testing::{scaler_context, TestLattice};

    use super::*;

    const PROPS: &str = r#"{"instances": 2, "tiers": [
        {"name": "primary", "requirements": {"region": "east"}},
        {"name": "standby", "requirements": {"region": "west"}}]}"#;

    fn ctx() -> ScalerContext {
        scaler_context("failover", PROPS)
    }

    fn lattice() -> TestLattice {
        TestLattice::new()
            .with_host("e1", &[("region", "east")])
            .with_host("e2", &[("region", "east")])
            .with_host("w1", &[("region", "west")])
    }

    /// Reconciles and applies until deployed, returning the lattice.
    fn settle(mut lattice: TestLattice) -> TestLattice {
        for _ in 0..5 {
            let result = Failover::reconcile(&ctx(), &lattice);
            if result.status == Status::Deployed {
                return lattice;
            }
            lattice.apply(&result.commands);
        }
        panic!(
            "no convergence: {:?}",
            Failover::reconcile(&ctx(), &lattice)
        );
    }

    fn hosts_running(lattice: &TestLattice) -> Vec<(String, u32)> {
        lattice
            .component_instances("app-web")
            .into_iter()
            .map(|i| (i.host_id, i.count))
            .collect()
    }

    #[test]
    fn runs_only_in_the_first_tier() {
        let settled = settle(lattice());
        assert_eq!(
            hosts_running(&settled),
            [("e1".into(), 1), ("e2".into(), 1)]
        );
    }

    #[test]
    fn fails_over_when_the_first_tier_is_gone_and_back_when_it_returns() {
        let settled = settle(lattice());
        let east_gone = settled.without_host("e1").without_host("e2");
        let on_west = settle(east_gone);
        assert_eq!(hosts_running(&on_west), [("w1".into(), 2)]);

        // East returns: instances start there first, west keeps its own until then.
        let back = on_west.with_host("e1", &[("region", "east")]);
        let result = Failover::reconcile(&ctx(), &back);
        assert!(
            result.commands.iter().all(|c| matches!(c,
                Command::ScaleComponent { host_id, .. } if host_id == "e1")),
            "west must not stop before east runs: {:?}",
            result.commands
        );
        let settled = settle(back);
        assert_eq!(hosts_running(&settled), [("e1".into(), 2)]);
    }

    #[test]
    fn no_tier_with_a_host_fails_and_names_the_tiers() {
        let result = Failover::reconcile(&ctx(), &TestLattice::new().with_host("x", &[]));
        let Status::Failed(why) = result.status else {
            panic!("{result:?}");
        };
        assert!(why.contains("'primary': region=east"), "{why}");
    }

    #[test]
    fn check_requires_tiers() {
        let found = Failover::check(&scaler_context(
            "failover",
            r#"{"instances": 1, "tiers": []}"#,
        ));
        assert_eq!(found[0].path, "tiers");
        assert!(Failover::check(&ctx()).is_empty());
    }
}
