//! Desired versus actual: the commands that turn what runs into what should run.

use std::collections::{BTreeMap, BTreeSet};

use crate::lattice::Lattice;
use crate::types::{
    Command, ComponentInstance, ComponentKind, ComponentSpec, Labels, ProviderInstance,
};

/// The annotation naming the application that started an instance (wadm's key, which the
/// controller sets on everything it starts).
pub const APP_ANNOTATION: &str = "wasmcloud.dev/appspec";

/// Whether an instance's annotations say application `app` started it.
pub fn started_by(annotations: &Labels, app: &str) -> bool {
    annotations.get(APP_ANNOTATION).map(String::as_str) == Some(app)
}

/// What runs now of one manifest component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Running {
    /// Host → instances: a component's count, or 1 for a provider.
    pub counts: BTreeMap<String, u32>,
    /// Hosts whose provider was started by someone else (another app, or a person). It counts
    /// as running there (one provider per id per host), but it is never stopped by this app.
    pub foreign: BTreeSet<String>,
    /// Hosts where this app's instances run an image other than the spec's (the manifest
    /// moved to a new version): they are replaced even when the count is already right.
    pub outdated: BTreeSet<String>,
}

/// What runs now of `spec` (of application `app`).
pub fn running(app: &str, spec: &ComponentSpec, lattice: &dyn Lattice) -> Running {
    match spec.kind {
        ComponentKind::Component => {
            // Annotations play no part for a component (each host runs one count of it, and
            // the count is the app's), so the lighter query serves.
            let instances = lattice.component_counts(&spec.id);
            Running {
                counts: sum_by_host(instances.iter().map(|i| (&i.host_id, i.count))),
                foreign: BTreeSet::new(),
                outdated: instances
                    .iter()
                    .filter(|i| i.count > 0 && is_outdated(&i.image, spec))
                    .map(|i| i.host_id.clone())
                    .collect(),
            }
        }
        ComponentKind::Provider => {
            let instances = lattice.provider_instances(&spec.id);
            Running {
                counts: provider_hosts(&instances)
                    .into_iter()
                    .map(|host| (host, 1))
                    .collect(),
                foreign: instances
                    .iter()
                    .filter(|i| !started_by(&i.annotations, app))
                    .map(|i| i.host_id.clone())
                    .collect(),
                outdated: instances
                    .iter()
                    .filter(|i| started_by(&i.annotations, app) && is_outdated(&i.image, spec))
                    .map(|i| i.host_id.clone())
                    .collect(),
            }
        }
    }
}

/// The commands that stop everything the context's component runs for its app (a scaler's
/// usual `cleanup`); foreign providers stay.
pub fn remove_all(ctx: &crate::ScalerContext, lattice: &dyn Lattice) -> Vec<Command> {
    let spec = &ctx.component;
    converge(spec, &BTreeMap::new(), &running(&ctx.app, spec, lattice))
}

/// The commands that take what runs to `desired` (host → instances; for a provider, any
/// count above 0 means "runs there"), leaving foreign providers alone.
///
/// Outdated instances are replaced: a component by a scale command carrying the new image
/// (the controller sends it with `allow_update`, so the host swaps the image in place), a
/// provider by stopping it (a later pass starts the new image there, since a host refuses two
/// providers with one id).
pub fn converge(
    spec: &ComponentSpec,
    desired: &BTreeMap<String, u32>,
    running: &Running,
) -> Vec<Command> {
    match spec.kind {
        ComponentKind::Component => {
            let mut commands = scale_commands(spec, desired, &running.counts);
            let changed: BTreeSet<String> = commands.iter().filter_map(command_host).collect();
            let updates = running.outdated.iter().filter_map(|host| {
                let want = desired.get(host).copied().unwrap_or(0);
                (want > 0 && !changed.contains(host)).then(|| Command::ScaleComponent {
                    host_id: host.clone(),
                    component_id: spec.id.clone(),
                    image: spec.image.clone(),
                    count: want,
                    config: spec.config.clone(),
                })
            });
            // Updates go last: new capacity (scale-ups) first, as for any rollout.
            let updates: Vec<Command> = updates.collect();
            let first_down = commands
                .iter()
                .position(|c| is_scale_down(c, &running.counts))
                .unwrap_or(commands.len());
            commands.splice(first_down..first_down, updates);
            commands
        }
        ComponentKind::Provider => {
            let hosts = |m: &BTreeMap<String, u32>| -> BTreeSet<String> {
                m.iter()
                    .filter(|(_, &n)| n > 0)
                    .map(|(h, _)| h.clone())
                    .collect()
            };
            let wanted = hosts(desired);
            let mut commands = provider_commands(spec, &wanted, &hosts(&running.counts));
            commands.retain(|c| {
                !matches!(c, Command::StopProvider { host_id, .. } if running.foreign.contains(host_id))
            });
            commands.extend(
                running
                    .outdated
                    .iter()
                    .filter(|host| wanted.contains(*host) && !running.foreign.contains(*host))
                    .map(|host| Command::StopProvider {
                        host_id: host.clone(),
                        provider_id: spec.id.clone(),
                    }),
            );
            commands
        }
    }
}

/// A running image that is surely another than the spec's ([`crate::image`]): one a host
/// reports in another form (a built-in provider's bare name, a digest for a tag), or not at
/// all, is taken as current rather than replaced on a guess.
fn is_outdated(running_image: &str, spec: &ComponentSpec) -> bool {
    crate::image::surely_differs(running_image, &spec.image)
}

fn command_host(command: &Command) -> Option<String> {
    match command {
        Command::ScaleComponent { host_id, .. } => Some(host_id.clone()),
        _ => None,
    }
}

fn is_scale_down(command: &Command, actual: &BTreeMap<String, u32>) -> bool {
    matches!(command, Command::ScaleComponent { host_id, count, .. }
        if *count < actual.get(host_id).copied().unwrap_or(0))
}

/// Instances of a component per host (summing entries that share a host).
pub fn component_counts(instances: &[ComponentInstance]) -> BTreeMap<String, u32> {
    sum_by_host(instances.iter().map(|i| (&i.host_id, i.count)))
}

/// Counts per host, summed over entries that share a host; hosts at 0 are left out. The sum
/// saturates: a host may report any count, and an overflow would panic (or, in the wasm
/// build, wrap to a small count and make a scaler add instances to a full host).
fn sum_by_host<'a>(entries: impl Iterator<Item = (&'a String, u32)>) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for (host, n) in entries {
        let count: &mut u32 = counts.entry(host.clone()).or_insert(0);
        *count = count.saturating_add(n);
    }
    counts.retain(|_, n| *n > 0);
    counts
}

/// Hosts a provider runs on.
pub fn provider_hosts(instances: &[ProviderInstance]) -> BTreeSet<String> {
    instances.iter().map(|i| i.host_id.clone()).collect()
}

/// `ScaleComponent` commands that take a component from `actual` to `desired` instances per
/// host: the host's total count, 0 to stop it. Scale-ups come first (by host id), then
/// scale-downs, so that new instances start before old ones stop.
pub fn scale_commands(
    spec: &ComponentSpec,
    desired: &BTreeMap<String, u32>,
    actual: &BTreeMap<String, u32>,
) -> Vec<Command> {
    let scale = |host: &str, count: u32| Command::ScaleComponent {
        host_id: host.to_string(),
        component_id: spec.id.clone(),
        image: spec.image.clone(),
        count,
        config: spec.config.clone(),
    };
    let mut ups = Vec::new();
    let mut downs = Vec::new();
    let hosts: BTreeSet<&String> = desired.keys().chain(actual.keys()).collect();
    for host in hosts {
        let want = desired.get(host).copied().unwrap_or(0);
        let have = actual.get(host).copied().unwrap_or(0);
        if want > have {
            ups.push(scale(host, want));
        } else if want < have {
            downs.push(scale(host, want));
        }
    }
    ups.extend(downs);
    ups
}

/// `StartProvider` on the desired hosts that lack the provider, then `StopProvider` on the
/// hosts that run it but should not, each by host id.
pub fn provider_commands(
    spec: &ComponentSpec,
    desired: &BTreeSet<String>,
    actual: &BTreeSet<String>,
) -> Vec<Command> {
    let starts = desired
        .difference(actual)
        .map(|host| Command::StartProvider {
            host_id: host.clone(),
            provider_id: spec.id.clone(),
            image: spec.image.clone(),
            config: spec.config.clone(),
        });
    let stops = actual
        .difference(desired)
        .map(|host| Command::StopProvider {
            host_id: host.clone(),
            provider_id: spec.id.clone(),
        });
    starts.chain(stops).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ComponentKind;

    fn spec() -> ComponentSpec {
        ComponentSpec {
            name: "echo".into(),
            kind: ComponentKind::Component,
            image: "file://echo.wasm".into(),
            id: "app-echo".into(),
            config: vec!["c".into()],
        }
    }

    fn map(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(h, n)| (h.to_string(), *n)).collect()
    }

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn scale(host: &str, count: u32) -> Command {
        Command::ScaleComponent {
            host_id: host.into(),
            component_id: "app-echo".into(),
            image: "file://echo.wasm".into(),
            count,
            config: vec!["c".into()],
        }
    }

    #[test]
    fn counts_sum_per_host() {
        let inst = |host: &str, count| ComponentInstance {
            host_id: host.into(),
            component_id: "app-echo".into(),
            count,
            ..Default::default()
        };
        assert_eq!(
            component_counts(&[inst("a", 1), inst("b", 0), inst("a", 2)]),
            map(&[("a", 3)])
        );
    }

    #[test]
    fn scale_ups_before_downs_and_nothing_when_equal() {
        let desired = map(&[("a", 2), ("b", 1), ("c", 1)]);
        let actual = map(&[("a", 1), ("b", 1), ("d", 3)]);
        assert_eq!(
            scale_commands(&spec(), &desired, &actual),
            [scale("a", 2), scale("c", 1), scale("d", 0)]
        );
        assert!(scale_commands(&spec(), &desired, &desired).is_empty());
    }

    #[test]
    fn foreign_providers_count_but_are_never_stopped() {
        use crate::testing::TestLattice;
        let provider = ComponentSpec {
            kind: ComponentKind::Provider,
            ..spec()
        };
        let ours = ProviderInstance {
            host_id: "a".into(),
            provider_id: "app-echo".into(),
            annotations: crate::label_map(&[(APP_ANNOTATION, "app")]),
            ..Default::default()
        };
        let theirs = ProviderInstance {
            host_id: "b".into(),
            annotations: crate::label_map(&[(APP_ANNOTATION, "other")]),
            ..ours.clone()
        };
        let lattice = TestLattice::new()
            .with_host("a", &[])
            .with_host("b", &[])
            .with_provider_instance(ours)
            .with_provider_instance(theirs);
        let now = running("app", &provider, &lattice);
        assert_eq!(now.counts, map(&[("a", 1), ("b", 1)]));
        assert_eq!(now.foreign, set(&["b"]));
        // Wanted nowhere: only ours stops.
        assert_eq!(
            converge(&provider, &BTreeMap::new(), &now),
            [Command::StopProvider {
                host_id: "a".into(),
                provider_id: "app-echo".into()
            }]
        );
        // Wanted on b: it already runs there, nothing to start.
        assert!(converge(&provider, &map(&[("a", 1), ("b", 1)]), &now).is_empty());
    }

    #[test]
    fn a_new_image_replaces_instances_whose_count_is_already_right() {
        use crate::testing::TestLattice;
        let old = |host: &str, count| ComponentInstance {
            host_id: host.into(),
            component_id: "app-echo".into(),
            image: "file://echo-v1.wasm".into(),
            count,
            ..Default::default()
        };
        let lattice = TestLattice::new()
            .with_host("a", &[])
            .with_host("b", &[])
            .with_host("c", &[])
            .with_component_instance(old("a", 2))
            .with_component_instance(old("b", 3));
        let now = running("app", &spec(), &lattice);
        assert_eq!(now.outdated, set(&["a", "b"]));
        // a keeps its count (an in-place update), b shrinks (the scale-down carries the new
        // image), c is new; the update comes after the scale-up and before the scale-down.
        assert_eq!(
            converge(&spec(), &map(&[("a", 2), ("b", 1), ("c", 1)]), &now),
            [scale("c", 1), scale("a", 2), scale("b", 1)]
        );
        // Not wanted any more: stopped, not updated.
        assert_eq!(
            converge(&spec(), &map(&[("b", 3)]), &now),
            [scale("b", 3), scale("a", 0)]
        );
    }

    #[test]
    fn an_unknown_running_image_is_not_replaced() {
        use crate::testing::TestLattice;
        let lattice = TestLattice::new()
            .with_host("a", &[])
            .with_component("a", "app-echo", 1);
        let now = running("app", &spec(), &lattice);
        assert!(now.outdated.is_empty());
        assert!(converge(&spec(), &map(&[("a", 1)]), &now).is_empty());
    }

    #[test]
    fn an_outdated_provider_of_this_app_is_stopped_to_be_started_anew() {
        use crate::testing::TestLattice;
        let provider = ComponentSpec {
            kind: ComponentKind::Provider,
            ..spec()
        };
        let instance = |host: &str, app: &str| ProviderInstance {
            host_id: host.into(),
            provider_id: "app-echo".into(),
            image: "file://old.wasm".into(),
            annotations: crate::label_map(&[(APP_ANNOTATION, app)]),
        };
        let lattice = TestLattice::new()
            .with_host("a", &[])
            .with_host("b", &[])
            .with_provider_instance(instance("a", "app"))
            .with_provider_instance(instance("b", "other"));
        let now = running("app", &provider, &lattice);
        assert_eq!(now.outdated, set(&["a"]));
        // Another app's provider is shared as it is, whatever its image.
        assert_eq!(
            converge(&provider, &map(&[("a", 1), ("b", 1)]), &now),
            [Command::StopProvider {
                host_id: "a".into(),
                provider_id: "app-echo".into()
            }]
        );
    }

    #[test]
    fn provider_starts_then_stops() {
        let cmds = provider_commands(&spec(), &set(&["a", "b"]), &set(&["b", "c"]));
        assert_eq!(
            cmds,
            [
                Command::StartProvider {
                    host_id: "a".into(),
                    provider_id: "app-echo".into(),
                    image: "file://echo.wasm".into(),
                    config: vec!["c".into()],
                },
                Command::StopProvider {
                    host_id: "c".into(),
                    provider_id: "app-echo".into(),
                },
            ]
        );
    }
}
