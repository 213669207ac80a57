//! The built-in `daemonscaler`: runs the given number of instances of a component on *every*
//! host that matches one of its spreads' label requirements (or on every host when it names
//! no spread), and one instance of a provider on each such host. Hosts that join or gain the
//! labels get it; hosts that lose them lose it.
//!
//! The properties are wadm's `daemonscaler` ones: `instances` (alias `replicas`) and `spread`
//! entries with `requirements`; a spread's `weight` is accepted and ignored, since every
//! matching host gets the same count.

use std::collections::BTreeMap;

use serde::Deserialize;
use trellis_sdk::{
    diff, labels, Command, ComponentKind, Diagnostic, Labels, Lattice, PluginInfo, Reconciled,
    Scaler, ScalerContext, Status,
};

/// The trait's properties, as wadm's `DaemonScalerProperty` (the same shape as spreadscaler's).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonProperties {
    /// Instances per matching host (providers always run once per host).
    #[serde(alias = "replicas")]
    pub instances: u32,
    #[serde(default)]
    pub spread: Vec<Spread>,
}

/// A group of hosts the daemon runs on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spread {
    pub name: String,
    #[serde(default)]
    pub requirements: Labels,
    /// Accepted for compatibility with wadm manifests; has no effect on a daemon.
    #[serde(default)]
    pub weight: Option<usize>,
}

pub struct DaemonScaler;

impl Scaler for DaemonScaler {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "daemonscaler".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            trait_types: vec!["daemonscaler".into()],
            description: "Runs instances on every host matching the label requirements".into(),
        }
    }

    fn reconcile(ctx: &ScalerContext, lattice: &dyn Lattice) -> Reconciled {
        let properties = match ctx.properties::<DaemonProperties>() {
            Ok(p) => p,
            Err(e) => return Reconciled::failed(e.to_string()),
        };
        let spec = &ctx.component;
        let per_host = match spec.kind {
            ComponentKind::Component => properties.instances,
            ComponentKind::Provider => u32::from(properties.instances > 0),
        };
        let eligible = eligible_hosts(&properties, lattice);
        let desired: BTreeMap<String, u32> = if per_host == 0 {
            BTreeMap::new()
        } else {
            eligible.iter().map(|h| (h.clone(), per_host)).collect()
        };

        let mut now = diff::running(&ctx.app, spec, lattice);
        // Hosts that vanished from the lattice cannot be told anything: leave them out.
        now.counts.retain(|host, _| lattice.host(host).is_some());
        let commands = diff::converge(spec, &desired, &now);

        let status = if !commands.is_empty() {
            let in_place = desired
                .iter()
                .filter(|(host, &n)| now.counts.get(*host).copied().unwrap_or(0) == n)
                .count();
            Status::Reconciling(format!(
                "'{}' in place on {in_place} of {} matching hosts",
                spec.name,
                desired.len()
            ))
        } else if eligible.is_empty() && per_host > 0 {
            Status::Waiting(if properties.spread.is_empty() {
                format!(
                    "the lattice has no host yet: '{}' starts on hosts as they join",
                    spec.name
                )
            } else {
                format!(
                    "no host matches {}: '{}' starts on hosts that join with those labels",
                    describe_spreads(&properties),
                    spec.name
                )
            })
        } else {
            Status::Deployed
        };
        Reconciled::new(commands, status)
    }

    fn cleanup(ctx: &ScalerContext, lattice: &dyn Lattice) -> Vec<Command> {
        diff::remove_all(ctx, lattice)
    }

    fn check(ctx: &ScalerContext) -> Vec<Diagnostic> {
        ctx.check_properties::<DaemonProperties>()
    }
}

trellis_sdk::export_scaler!(DaemonScaler);

/// Hosts matching any spread (every host when there is none), ordered by id.
fn eligible_hosts(properties: &DaemonProperties, lattice: &dyn Lattice) -> Vec<String> {
    if properties.spread.is_empty() {
        return lattice.hosts().into_iter().map(|h| h.id).collect();
    }
    let mut hosts: Vec<String> = properties
        .spread
        .iter()
        .flat_map(|s| lattice.hosts_matching(&s.requirements))
        .map(|h| h.id)
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

fn describe_spreads(properties: &DaemonProperties) -> String {
    properties
        .spread
        .iter()
        .map(|s| {
            format!(
                "spread '{}' (requirements {})",
                s.name,
                labels::describe(&s.requirements)
            )
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests;
