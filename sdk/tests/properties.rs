//! Property tests of the SDK's arithmetic: what the doc comments of `spread` (splitting by
//! weight, distributing over hosts), `diff::converge` and `config::converge_configs` promise,
//! checked on generated inputs. Bounded case counts keep `cargo test` quick.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use trellis_sdk::config::{converge_configs, ConfigProperty, ConfigValue};
use trellis_sdk::diff::{component_counts, converge, running, APP_ANNOTATION};
use trellis_sdk::spread::{distribute, split_by_weight};
use trellis_sdk::testing::TestLattice;
use trellis_sdk::{
    label_map, Command, ComponentInstance, ComponentKind, ComponentSpec, Lattice, ProviderInstance,
};

/// Weights from none to the largest, with zeros and equal ones made likely.
fn weight() -> impl Strategy<Value = usize> {
    prop_oneof![
        2 => Just(0usize),
        3 => 1usize..5,
        2 => 1usize..1000,
        1 => Just(usize::MAX),
        1 => any::<usize>(),
    ]
}

fn total() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0usize..50, 1 => Just(usize::MAX), 1 => any::<usize>()]
}

const HOSTS: [&str; 4] = ["h1", "h2", "h3", "h4"];

fn spec(kind: ComponentKind) -> ComponentSpec {
    ComponentSpec {
        name: "web".into(),
        kind,
        image: "new".into(),
        id: "app-web".into(),
        config: vec!["c".into()],
    }
}

/// Per host: nothing, or instances running an image (the spec's, an older one, or unknown).
fn component_lattice() -> impl Strategy<Value = TestLattice> {
    prop::collection::vec(
        prop::option::of((1u32..4, prop::sample::select(vec!["new", "old", ""]))),
        HOSTS.len(),
    )
    .prop_map(|running| {
        let mut lattice = TestLattice::new();
        for (host, instance) in HOSTS.iter().zip(running) {
            lattice = lattice.with_host(host, &[]);
            if let Some((count, image)) = instance {
                lattice = lattice.with_component_instance(ComponentInstance {
                    host_id: host.to_string(),
                    component_id: "app-web".into(),
                    image: image.into(),
                    count,
                    annotations: label_map(&[(APP_ANNOTATION, "app")]),
                });
            }
        }
        lattice
    })
}

#[derive(Debug, Clone, Copy)]
enum ProviderThere {
    None,
    Ours(&'static str),
    /// Started by another app (`"other"`) or by hand (`""`).
    Foreign(&'static str),
}

fn provider_lattice() -> impl Strategy<Value = (TestLattice, BTreeSet<String>)> {
    let there = prop_oneof![
        Just(ProviderThere::None),
        prop::sample::select(vec!["new", "old", ""]).prop_map(ProviderThere::Ours),
        prop::sample::select(vec!["other", ""]).prop_map(ProviderThere::Foreign),
    ];
    prop::collection::vec(there, HOSTS.len()).prop_map(|there| {
        let mut lattice = TestLattice::new();
        let mut foreign = BTreeSet::new();
        for (host, there) in HOSTS.iter().zip(there) {
            lattice = lattice.with_host(host, &[]);
            match there {
                ProviderThere::None => {}
                ProviderThere::Ours(image) => {
                    lattice = lattice.with_provider_instance(ProviderInstance {
                        host_id: host.to_string(),
                        provider_id: "app-web".into(),
                        image: image.into(),
                        annotations: label_map(&[(APP_ANNOTATION, "app")]),
                    })
                }
                ProviderThere::Foreign(app) => {
                    foreign.insert(host.to_string());
                    lattice = lattice.with_foreign_provider(host, "app-web", app);
                }
            }
        }
        (lattice, foreign)
    })
}

fn desired() -> impl Strategy<Value = BTreeMap<String, u32>> {
    prop::collection::btree_map(
        prop::sample::select(HOSTS.to_vec()).prop_map(str::to_string),
        0u32..4,
        0..=HOSTS.len(),
    )
}

fn wanted(desired: &BTreeMap<String, u32>) -> BTreeMap<String, u32> {
    desired
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(h, &n)| (h.clone(), n))
        .collect()
}

fn host_of(command: &Command) -> &str {
    match command {
        Command::ScaleComponent { host_id, .. }
        | Command::StartProvider { host_id, .. }
        | Command::StopProvider { host_id, .. } => host_id,
        other => panic!("converge asked for {other:?}"),
    }
}

fn config_value() -> impl Strategy<Value = ConfigValue> {
    prop_oneof![
        prop::sample::select(vec!["1", "x", "true", ""]).prop_map(|s| ConfigValue::Text(s.into())),
        prop_oneof![Just(1i64), any::<i64>()].prop_map(ConfigValue::Integer),
        any::<bool>().prop_map(ConfigValue::Bool),
    ]
}

fn config_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["c1", "c2", "c3"]).prop_map(str::to_string)
}

fn configs() -> impl Strategy<Value = Vec<ConfigProperty>> {
    prop::collection::vec(
        (
            config_name(),
            prop::option::of(prop::collection::btree_map(
                prop::sample::select(vec!["k", "port"]).prop_map(str::to_string),
                config_value(),
                0..3,
            )),
        )
            .prop_map(|(name, properties)| ConfigProperty { name, properties }),
        0..5,
    )
}

fn config_lattice() -> impl Strategy<Value = TestLattice> {
    prop::collection::btree_map(
        config_name(),
        prop::collection::btree_map(
            prop::sample::select(vec!["k", "port"]),
            prop::sample::select(vec!["1", "x", "true", "false", ""]),
            0..3,
        ),
        0..3,
    )
    .prop_map(|configs| {
        let mut lattice = TestLattice::new();
        for (name, entries) in configs {
            let entries: Vec<(&str, &str)> = entries.into_iter().collect();
            lattice = lattice.with_config(&name, &entries);
        }
        lattice
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The largest remainder method as documented: one share per spread, summing to `total`;
    /// each share the floor of its exact proportion or one more, the extra ones going to the
    /// largest remainders (earlier spreads on ties); weight 0 gets nothing unless all are 0,
    /// and then all count as equal.
    #[test]
    fn split_by_weight_is_largest_remainder(
        total in total(),
        weights in prop::collection::vec(weight(), 0..8),
    ) {
        let shares = split_by_weight(total, &weights);
        prop_assert_eq!(shares.len(), weights.len());
        if weights.is_empty() {
            return Ok(());
        }
        prop_assert_eq!(shares.iter().map(|&s| s as u128).sum::<u128>(), total as u128);
        let all_zero = weights.iter().all(|&w| w == 0);
        let effective: Vec<u128> =
            weights.iter().map(|&w| if all_zero { 1 } else { w as u128 }).collect();
        let sum: u128 = effective.iter().sum();
        let mut extra = Vec::new();
        for (i, (&share, &w)) in shares.iter().zip(&effective).enumerate() {
            let exact = total as u128 * w;
            let floor = exact / sum;
            prop_assert!(
                share as u128 == floor || share as u128 == floor + 1,
                "spread {i}: {share} for exact {floor}+{}/{sum}", exact % sum
            );
            if w == 0 {
                prop_assert_eq!(share, 0, "a spread of weight 0 got instances");
            }
            extra.push((share as u128 > floor, exact % sum));
        }
        for (i, &(got_i, rem_i)) in extra.iter().enumerate() {
            for (j, &(got_j, rem_j)) in extra.iter().enumerate() {
                if got_i && !got_j {
                    prop_assert!(
                        rem_i > rem_j || (rem_i == rem_j && i < j),
                        "spread {i} (remainder {rem_i}) got an extra one before {j} ({rem_j})"
                    );
                }
            }
        }
    }

    /// `distribute` as documented: never past the cap, hosts at zero left out, only ranked or
    /// current hosts used; when growing, what runs stays and the count is reached unless the
    /// ranked hosts are full; when shrinking, nothing is added anywhere.
    #[test]
    fn distribute_keeps_its_promises(
        count in 0usize..20,
        ranking in prop::collection::vec(prop::sample::select(HOSTS.to_vec()), 0..6),
        current in prop::collection::btree_map(
            prop::sample::select(vec!["h1", "h2", "h3", "h4", "gone"]).prop_map(str::to_string),
            0usize..6,
            0..4,
        ),
        cap in prop::option::of(1usize..4),
    ) {
        let ranking: Vec<String> = ranking.into_iter().map(str::to_string).collect();
        let placed = distribute(count, &ranking, &current, cap);
        let limit = cap.unwrap_or(usize::MAX);
        let kept: BTreeMap<&String, usize> = current
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(h, &n)| (h, n.min(limit)))
            .collect();
        let kept_total: usize = kept.values().sum();
        let total: usize = placed.values().sum();
        for (host, &n) in &placed {
            prop_assert!(n > 0 && n <= limit, "{host}: {n}");
            prop_assert!(ranking.contains(host) || kept.contains_key(host), "{host} from nowhere");
        }
        if count >= kept_total {
            for (host, &n) in &kept {
                prop_assert!(placed.get(*host).copied().unwrap_or(0) >= n, "{host} lost instances");
            }
            let ranked: BTreeSet<&String> = ranking.iter().collect();
            let room: usize = ranked
                .iter()
                .map(|h| limit.saturating_sub(kept.get(*h).copied().unwrap_or(0)).min(count))
                .sum();
            prop_assert_eq!(total, count.min(kept_total + room));
        } else {
            prop_assert_eq!(total, count);
            for (host, &n) in &placed {
                prop_assert!(n <= kept.get(host).copied().unwrap_or(0), "{host} grew");
            }
        }
    }

    /// Applying what `converge` returns takes a component to the desired counts on the spec's
    /// image; a second look finds nothing to do. Each host gets one command at most, and no
    /// scale-down comes before a scale-up.
    #[test]
    fn converge_reaches_the_desired_components(
        mut lattice in component_lattice(),
        desired in desired(),
    ) {
        let spec = spec(ComponentKind::Component);
        let before = running("app", &spec, &lattice);
        let commands = converge(&spec, &desired, &before);
        let hosts: Vec<&str> = commands.iter().map(host_of).collect();
        let unique: BTreeSet<&str> = hosts.iter().copied().collect();
        prop_assert_eq!(unique.len(), hosts.len(), "a host twice in {:?}", commands);
        let down = |c: &Command| matches!(c, Command::ScaleComponent { host_id, count, .. }
            if *count < before.counts.get(host_id).copied().unwrap_or(0));
        if let Some(first_down) = commands.iter().position(down) {
            prop_assert!(commands[first_down..].iter().all(down), "{:?}", commands);
        }
        lattice.apply(&commands);
        let after = running("app", &spec, &lattice);
        prop_assert_eq!(&after.counts, &wanted(&desired));
        prop_assert!(after.outdated.is_empty(), "{:?} still outdated", after.outdated);
        prop_assert!(converge(&spec, &desired, &after).is_empty());
    }

    /// A provider reaches the desired hosts in at most two passes (an outdated one is stopped,
    /// then started anew); other apps' providers are never stopped; a third pass does nothing.
    #[test]
    fn converge_reaches_the_desired_providers(
        (mut lattice, foreign) in provider_lattice(),
        desired in desired(),
    ) {
        let spec = spec(ComponentKind::Provider);
        let want: BTreeSet<String> = wanted(&desired).into_keys().collect();
        for _pass in 0..2 {
            let now = running("app", &spec, &lattice);
            let commands = converge(&spec, &desired, &now);
            for c in &commands {
                if let Command::StopProvider { host_id, .. } = c {
                    prop_assert!(!foreign.contains(host_id), "stopped a foreign provider on {host_id}");
                }
            }
            lattice.apply(&commands);
        }
        let now = running("app", &spec, &lattice);
        let on: BTreeSet<String> = now.counts.keys().cloned().collect();
        prop_assert!(want.is_subset(&on), "wanted {want:?}, runs on {on:?}");
        let ours: BTreeSet<String> = on.difference(&now.foreign).cloned().collect();
        prop_assert!(ours.is_subset(&want), "ours on {ours:?}, wanted {want:?}");
        prop_assert_eq!(&now.foreign, &foreign);
        prop_assert!(now.outdated.is_empty());
        prop_assert!(converge(&spec, &desired, &now).is_empty());
    }

    /// Configs as documented: the first of each name counts; an owned one is put when missing
    /// (created) or different (drifted) and left alone when equal; an external one is named
    /// when missing. After the puts, a second look finds nothing to do.
    #[test]
    fn converge_configs_puts_what_differs(configs in configs(), mut lattice in config_lattice()) {
        let state = converge_configs(&configs, &lattice);
        let mut first: BTreeMap<&str, &ConfigProperty> = BTreeMap::new();
        for c in &configs {
            first.entry(c.name.as_str()).or_insert(c);
        }
        let put: Vec<&str> = state
            .commands
            .iter()
            .map(|c| match c {
                Command::PutConfig { name, .. } => name.as_str(),
                other => panic!("converge_configs asked for {other:?}"),
            })
            .collect();
        for (name, config) in &first {
            let current = lattice.config(name);
            match config.entries() {
                Some(entries) => {
                    let differs = current.as_ref() != Some(&entries);
                    prop_assert_eq!(put.contains(name), differs, "{}", name);
                    prop_assert_eq!(
                        state.created.iter().any(|c| c == name),
                        current.is_none()
                    );
                    prop_assert_eq!(
                        state.drifted.iter().any(|c| c == name),
                        current.is_some() && differs
                    );
                }
                None => {
                    prop_assert!(!put.contains(name));
                    prop_assert_eq!(
                        state.missing_external.iter().any(|c| c == name),
                        current.is_none()
                    );
                }
            }
        }
        let unique: BTreeSet<&str> = put.iter().copied().collect();
        prop_assert_eq!(unique.len(), put.len());
        lattice.apply(&state.commands);
        for (name, config) in &first {
            if let Some(entries) = config.entries() {
                prop_assert_eq!(lattice.config(name), Some(entries));
            }
        }
        let again = converge_configs(&configs, &lattice);
        prop_assert!(again.commands.is_empty() && again.created.is_empty() && again.drifted.is_empty());
        prop_assert_eq!(again.missing_external, state.missing_external);
    }

    /// Instances summed per host, whatever counts the lattice reports: saturating at
    /// u32::MAX rather than overflowing, hosts at zero left out.
    #[test]
    fn component_counts_saturate(
        instances in prop::collection::vec(
            (prop::sample::select(HOSTS.to_vec()), prop_oneof![0u32..3, Just(u32::MAX), any::<u32>()]),
            0..6,
        ),
    ) {
        let instances: Vec<ComponentInstance> = instances
            .into_iter()
            .map(|(host, count)| ComponentInstance {
                host_id: host.into(),
                component_id: "app-web".into(),
                count,
                ..Default::default()
            })
            .collect();
        let counts = component_counts(&instances);
        for host in HOSTS {
            let sum: u64 = instances.iter().filter(|i| i.host_id == host).map(|i| u64::from(i.count)).sum();
            let want = u32::try_from(sum).unwrap_or(u32::MAX);
            prop_assert_eq!(counts.get(host).copied().unwrap_or(0), want);
        }
    }
}

/// Found by `component_counts_saturate`: two entries on one host summing past u32::MAX
/// overflowed (a panic natively, a wrapped small count in a plugin).
#[test]
fn counts_past_the_largest_saturate() {
    let instance = |count| ComponentInstance {
        host_id: "h1".into(),
        component_id: "app-web".into(),
        count,
        ..Default::default()
    };
    let counts = component_counts(&[instance(u32::MAX), instance(1)]);
    assert_eq!(counts["h1"], u32::MAX);
}
