//! The built-in `spreadscaler`: runs N instances of a component (or N instances of a provider,
//! one per host) spread over groups of hosts chosen by label requirements, in proportion to
//! each group's weight.
//!
//! Unlike wadm's, it spreads a group's instances over *several* hosts: placement plugins rank
//! the eligible hosts (`Lattice::rank_at_least`, as many as the spread has instances) and
//! missing instances go round robin over that ranking. What already runs on a host that still qualifies stays there, so a reconcile pass
//! moves only what it must.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use trellis_sdk::diff;
use trellis_sdk::spread::{distribute, split_by_weight};
use trellis_sdk::{
    labels, Command, ComponentKind, ComponentSpec, Diagnostic, Labels, Lattice, PlacementRequest,
    PluginInfo, Reconciled, Scaler, ScalerContext, Status,
};

/// The weight of a spread that names none (as in wadm).
pub const DEFAULT_WEIGHT: usize = 100;

/// The trait's properties, as wadm's `SpreadScalerProperty`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpreadProperties {
    #[serde(alias = "replicas")]
    pub instances: usize,
    #[serde(default)]
    pub spread: Vec<Spread>,
}

/// One group of hosts and its share of the instances.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spread {
    pub name: String,
    /// Labels a host must carry to belong to this spread.
    #[serde(default)]
    pub requirements: Labels,
    /// Relative share of the instances ([`DEFAULT_WEIGHT`] when absent).
    #[serde(default)]
    pub weight: Option<usize>,
}

impl SpreadProperties {
    /// The spreads to honour: the manifest's, or one spread over every host.
    fn spreads(&self) -> Vec<Spread> {
        if self.spread.is_empty() {
            vec![Spread {
                name: "default".into(),
                requirements: Labels::new(),
                weight: None,
            }]
        } else {
            self.spread.clone()
        }
    }
}

pub struct SpreadScaler;

impl Scaler for SpreadScaler {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "spreadscaler".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            trait_types: vec!["spreadscaler".into()],
            description: "Spreads instances over groups of hosts by weight, and over several \
                          hosts within a group"
                .into(),
        }
    }

    fn reconcile(ctx: &ScalerContext, lattice: &dyn Lattice) -> Reconciled {
        let properties = match ctx.properties::<SpreadProperties>() {
            Ok(p) => p,
            Err(e) => return Reconciled::failed(e.to_string()),
        };
        let spec = &ctx.component;
        let mut now = diff::running(&ctx.app, spec, lattice);
        let actual = as_usize(&now.counts);
        let plan = plan(spec, &properties, &actual, lattice);

        // Hosts that vanished from the lattice cannot be told anything: leave them out.
        now.counts.retain(|host, _| plan.known_hosts.contains(host));
        let actual = as_usize(&now.counts);
        let commands = diff::converge(spec, &as_u32(&plan.desired), &now);

        let wanted: usize = plan.desired.values().sum();
        // An instance of an older image is not in place: it is about to be replaced.
        let in_place: usize = plan
            .desired
            .iter()
            .filter(|(host, _)| !now.outdated.contains(*host))
            .map(|(host, &n)| n.min(actual.get(host).copied().unwrap_or(0)))
            .sum();
        let status = if !plan.failures.is_empty() {
            Status::Failed(plan.failures.join("; "))
        } else if !commands.is_empty() {
            Status::Reconciling(format!(
                "{in_place} of {wanted} instances of '{}' in place",
                spec.name
            ))
        } else if !plan.shortfalls.is_empty() {
            Status::Waiting(plan.shortfalls.join("; "))
        } else {
            Status::Deployed
        };
        Reconciled::new(commands, status)
    }

    fn cleanup(ctx: &ScalerContext, lattice: &dyn Lattice) -> Vec<Command> {
        diff::remove_all(ctx, lattice)
    }

    fn check(ctx: &ScalerContext) -> Vec<Diagnostic> {
        ctx.check_properties::<SpreadProperties>()
    }
}

trellis_sdk::export_scaler!(SpreadScaler);

/// Where the component or provider should run, and what keeps it from running so.
#[derive(Debug, Default)]
struct Plan {
    /// Host → instances wanted there.
    desired: BTreeMap<String, usize>,
    /// Hosts seen in this pass (known to exist).
    known_hosts: BTreeSet<String>,
    /// Spreads no host matches: the trait cannot be met as written.
    failures: Vec<String>,
    /// Spreads that got fewer instances than their share (not enough room).
    shortfalls: Vec<String>,
}

fn as_usize(counts: &BTreeMap<String, u32>) -> BTreeMap<String, usize> {
    counts
        .iter()
        .map(|(h, &n)| (h.clone(), n as usize))
        .collect()
}

fn as_u32(counts: &BTreeMap<String, usize>) -> BTreeMap<String, u32> {
    counts
        .iter()
        .map(|(h, &n)| (h.clone(), u32::try_from(n).unwrap_or(u32::MAX)))
        .collect()
}

fn plan(
    spec: &ComponentSpec,
    properties: &SpreadProperties,
    actual: &BTreeMap<String, usize>,
    lattice: &dyn Lattice,
) -> Plan {
    let spreads = properties.spreads();
    let weights: Vec<usize> = spreads
        .iter()
        .map(|s| s.weight.unwrap_or(DEFAULT_WEIGHT))
        .collect();
    let shares = split_by_weight(properties.instances, &weights);
    // A provider runs at most once per host, across all spreads.
    let cap = match spec.kind {
        ComponentKind::Component => None,
        ComponentKind::Provider => Some(1),
    };

    // The most specific spreads claim hosts (and the instances on them) first, so that a
    // catch-all spread does not take over the hosts a narrower one needs.
    let mut order: Vec<usize> = (0..spreads.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(spreads[i].requirements.len()));

    let mut plan = Plan::default();
    // Running instances not yet claimed by a spread.
    let mut unclaimed = actual.clone();
    // The hosts that run an instance, looked up once and in one query. The scaler reads only
    // these (and the placement ranking when it must add instances), never the whole lattice:
    // on a 10,000-host lattice a settled component costs a single lookup of a few hosts.
    let running_ids: Vec<String> = actual.keys().cloned().collect();
    let running_hosts: BTreeMap<String, Labels> = lattice
        .hosts_by_id(&running_ids)
        .into_iter()
        .zip(running_ids)
        .filter_map(|(host, id)| host.map(|h| (id, h.labels)))
        .collect();
    plan.known_hosts.extend(running_hosts.keys().cloned());
    for i in order {
        let (spread, share) = (&spreads[i], shares[i]);
        if share == 0 {
            continue;
        }
        let full = |desired: &BTreeMap<String, usize>, host: &str| {
            cap.is_some() && desired.contains_key(host)
        };
        let current: BTreeMap<String, usize> = running_hosts
            .iter()
            .filter(|(host, host_labels)| {
                labels::matches(host_labels, &spread.requirements) && !full(&plan.desired, host)
            })
            .filter_map(|(host, _)| match unclaimed.get(host) {
                Some(&n) if n > 0 => Some((host.clone(), n)),
                _ => None,
            })
            .collect();
        let running_here: usize = current.values().sum();
        // Ask placement only when instances must be added: a settled or shrinking spread costs
        // no placement call (surplus goes from the hosts with the most instances). As many
        // hosts as the spread has instances, so that each can have a host of its own (a
        // provider must); hosts another spread took for a provider do not count.
        let ranking: Vec<String> = if running_here >= share {
            Vec::new()
        } else {
            let taken = if cap.is_some() { plan.desired.len() } else { 0 };
            let request = PlacementRequest {
                component_id: spec.id.clone(),
                requirements: spread.requirements.clone(),
            };
            lattice
                .rank_at_least(&request, share + taken)
                .into_iter()
                .filter(|host| !full(&plan.desired, host))
                .collect()
        };
        if running_here < share && ranking.is_empty() && current.is_empty() {
            plan.failures.push(format!(
                "no host matches spread '{}' (requirements {})",
                spread.name,
                labels::describe(&spread.requirements)
            ));
            continue;
        }
        plan.known_hosts.extend(ranking.iter().cloned());
        let placed = distribute(share, &ranking, &current, cap);
        let total: usize = placed.values().sum();
        if total < share {
            let eligible: BTreeSet<&String> = ranking.iter().chain(current.keys()).collect();
            plan.shortfalls.push(format!(
                "spread '{}' has {total} of {share} instances: no more room on the {} hosts \
                 matching requirements {}",
                spread.name,
                eligible.len(),
                labels::describe(&spread.requirements)
            ));
        }
        for (host, n) in placed {
            if let Some(left) = unclaimed.get_mut(&host) {
                *left = left.saturating_sub(n);
            }
            *plan.desired.entry(host).or_insert(0) += n;
        }
    }
    plan
}

#[cfg(test)]
mod tests;
