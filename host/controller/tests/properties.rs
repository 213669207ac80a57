//! Property tests of the controller's pure parts (issue 16: bad input costs at most its size):
//! validation of any text, the control-interface encoding of commands, the lattice state under
//! any sequence of events, and the choice of a rollback target. Case counts are bounded so that
//! `cargo test` stays quick; `fuzz/` runs the byte-level ones for longer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use trellis_controller::commands::{decode, encode, Origin};
use trellis_controller::state::{LatticeState, Touched};
use trellis_controller::store::{HistoryEntry, StoredApp, StoredVersion};
use trellis_controller::validate::validate_text;
use trellis_lattice::api::Severity;
use trellis_lattice::ctl::{self, ComponentDescription, HostInventory, ProviderDescription};
use trellis_lattice::event::{
    ComponentScaleFailed, ComponentScaled, Event, HostHeartbeat, HostStarted, HostStopped,
    ProviderStarted, ProviderStopped,
};
use trellis_lattice::Manifest;
use trellis_runtime::bindings::{
    Command, DeleteLink, Link, Pair, PutConfig, ScaleComponent, StartProvider, StopProvider,
};

mod oracles;
use oracles::{
    check_findings, check_snapshot, check_touched, on_the_wire, runtime_without_plugins, view, View,
};

/// Short text of any characters, with subject separators and wildcards made likely.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>().prop_map(|s| s.chars().take(10).collect()),
        2 => "[a-zA-Z0-9.*> _-]{0,10}",
    ]
}

// ---------------------------------------------------------------------------------------------
// validate_text

/// A manifest whose fields are either what the controller accepts or a near miss.
fn manifest_text() -> impl Strategy<Value = String> {
    let api_version = prop_oneof![3 => Just("core.oam.dev/v1beta1".to_string()), 1 => text()];
    let kind = prop_oneof![3 => Just("Application".to_string()), 1 => text()];
    let name = prop_oneof![3 => "[a-z][a-z0-9-]{0,8}", 1 => text()];
    let version = prop_oneof![3 => "v[0-9]\\.[0-9]", 1 => Just("latest".to_string()), 1 => text()];
    let component = (
        "[a-z][a-z0-9_-]{0,6}",
        prop::option::of(prop_oneof!["[a-z][a-z0-9-]{0,6}", text()]),
        prop::collection::vec(prop_oneof!["[a-z][a-z0-9-]{0,6}", text()], 0..2),
        prop::collection::vec(prop_oneof!["spreadscaler", "link", text()], 0..3),
    );
    (
        api_version,
        kind,
        name,
        version,
        prop::collection::vec(component, 0..4),
        any::<bool>(),
    )
        .prop_map(|(api_version, kind, name, version, components, as_json)| {
            let components: Vec<serde_json::Value> = components
                .into_iter()
                .map(|(name, id, configs, traits)| {
                    let mut properties = serde_json::json!({ "image": "file:///c.wasm" });
                    if let Some(id) = id {
                        properties["id"] = id.into();
                    }
                    if !configs.is_empty() {
                        properties["config"] = configs
                            .into_iter()
                            .map(|name| serde_json::json!({ "name": name }))
                            .collect();
                    }
                    let traits: Vec<serde_json::Value> = traits
                        .into_iter()
                        .map(|t| serde_json::json!({ "type": t, "properties": { "instances": 1 } }))
                        .collect();
                    serde_json::json!({
                        "name": name, "type": "component", "properties": properties, "traits": traits,
                    })
                })
                .collect();
            let manifest = serde_json::json!({
                "apiVersion": api_version, "kind": kind,
                "metadata": { "name": name, "annotations": { "version": version } },
                "spec": { "components": components },
            });
            if as_json {
                serde_json::to_string_pretty(&manifest).unwrap()
            } else {
                serde_yaml_ng::to_string(&manifest).unwrap()
            }
        })
}

/// Text that is a manifest, a manifest cut short, or anything at all.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        manifest_text(),
        (manifest_text(), any::<prop::sample::Index>()).prop_map(|(text, cut)| {
            let chars: Vec<char> = text.chars().collect();
            chars[..cut.index(chars.len() + 1)].iter().collect()
        }),
        any::<String>(),
    ]
}

fn safe(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

// ---------------------------------------------------------------------------------------------
// commands

fn strings() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(text(), 0..3)
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (text(), text(), text(), any::<u32>(), strings()).prop_map(
            |(host_id, component_id, image, count, config)| {
                Command::ScaleComponent(ScaleComponent {
                    host_id,
                    component_id,
                    image,
                    count,
                    config,
                })
            }
        ),
        (text(), text(), text(), strings()).prop_map(|(host_id, provider_id, image, config)| {
            Command::StartProvider(StartProvider {
                host_id,
                provider_id,
                image,
                config,
            })
        }),
        (text(), text()).prop_map(|(host_id, provider_id)| {
            Command::StopProvider(StopProvider {
                host_id,
                provider_id,
            })
        }),
        (
            (text(), text(), text(), text(), text()),
            (strings(), strings(), strings())
        )
            .prop_map(
                |(
                    (source_id, target, name, wit_namespace, wit_package),
                    (interfaces, source_config, target_config),
                )| {
                    Command::PutLink(Link {
                        source_id,
                        target,
                        name,
                        wit_namespace,
                        wit_package,
                        interfaces,
                        source_config,
                        target_config,
                    })
                }
            ),
        (text(), text(), text(), text()).prop_map(
            |(source_id, name, wit_namespace, wit_package)| {
                Command::DeleteLink(DeleteLink {
                    source_id,
                    name,
                    wit_namespace,
                    wit_package,
                })
            }
        ),
        (text(), prop::collection::vec((text(), text()), 0..4)).prop_map(|(name, entries)| {
            Command::PutConfig(PutConfig {
                name,
                entries: entries
                    .into_iter()
                    .map(|(key, value)| Pair { key, value })
                    .collect(),
            })
        }),
        text().prop_map(Command::DeleteConfig),
    ]
}

fn origin() -> impl Strategy<Value = Origin> {
    (text(), text()).prop_map(|(app, scaler)| Origin { app, scaler })
}

fn lattice_name() -> impl Strategy<Value = String> {
    prop_oneof![Just("default".to_string()), Just("a.b".to_string()), text()]
}

/// The bindings' types have no `PartialEq`; their `Debug` shows every field.
fn same(a: &Command, b: &Command) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// Who the wire says asked: only scale and start requests carry annotations.
fn origin_on_the_wire(command: &Command, origin: &Origin) -> Origin {
    match command {
        Command::ScaleComponent(_) | Command::StartProvider(_) => origin.clone(),
        _ => Origin {
            app: String::new(),
            scaler: String::new(),
        },
    }
}

/// Control-interface subjects near the command ones, with bodies near their shapes.
fn request() -> impl Strategy<Value = (String, String, Vec<u8>)> {
    let tail = prop_oneof![
        (
            prop::sample::select(vec![
                "component.scale",
                "provider.start",
                "provider.stop",
                "link.put",
                "link.del",
                "config.put",
                "config.del",
                "host.ping",
                "component",
                "",
            ]),
            prop::option::of(text())
        )
            .prop_map(|(t, rest)| match rest {
                Some(rest) => format!("{t}.{rest}"),
                None => t.to_string(),
            }),
        text(),
    ];
    let field = prop::sample::select(vec![
        "component_ref",
        "component_id",
        "annotations",
        "count",
        "max_instances",
        "host_id",
        "config",
        "provider_id",
        "provider_ref",
        "source_id",
        "target",
        "name",
        "wit_namespace",
        "wit_package",
        "interfaces",
        "k",
    ]);
    let value = prop_oneof![
        text().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u32>().prop_map(serde_json::Value::from),
        strings().prop_map(serde_json::Value::from),
        prop::collection::btree_map(text(), text(), 0..3)
            .prop_map(|m| serde_json::to_value(m).unwrap()),
        Just(serde_json::Value::Null),
    ];
    let body = prop_oneof![
        3 => prop::collection::btree_map(field, value, 0..6)
            .prop_map(|m| serde_json::to_vec(&m).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..24),
    ];
    (lattice_name(), tail, body)
}

// ---------------------------------------------------------------------------------------------
// lattice state

const HOSTS: [&str; 3] = ["H1", "H2", "H3"];
const IDS: [&str; 3] = ["a", "b", "c"];
const PROVIDERS: [&str; 2] = ["p", "q"];

#[derive(Debug, Clone)]
enum Step {
    /// An event from `source`, `age` seconds older than now (replayed events are older).
    Event {
        source: &'static str,
        event: EventSpec,
        age: u64,
    },
    /// The same heartbeat twice in a row.
    HeartbeatTwice(&'static str, HostHeartbeat),
    Inventory(HostInventory),
    Advance(u64),
    Expire(u64),
}

/// `Event` is not `Debug + Clone` in every variant we need to print; keep what to build.
#[derive(Debug, Clone)]
enum EventSpec {
    Started(BTreeMap<String, String>),
    Stopped,
    Heartbeat(HostHeartbeat),
    Scaled(ComponentScaled),
    ScaleFailed(String),
    ProviderStarted(ProviderStarted),
    ProviderStopped(ProviderStopped),
}

impl EventSpec {
    fn event(&self) -> Event {
        match self {
            EventSpec::Started(labels) => Event::HostStarted(HostStarted {
                labels: labels.clone(),
                ..Default::default()
            }),
            EventSpec::Stopped => Event::HostStopped(HostStopped::default()),
            EventSpec::Heartbeat(hb) => Event::HostHeartbeat(hb.clone()),
            EventSpec::Scaled(e) => Event::ComponentScaled(e.clone()),
            EventSpec::ScaleFailed(id) => Event::ComponentScaleFailed(ComponentScaleFailed {
                component_id: id.clone(),
                ..Default::default()
            }),
            EventSpec::ProviderStarted(e) => Event::ProviderStarted(e.clone()),
            EventSpec::ProviderStopped(e) => Event::ProviderStopped(e.clone()),
        }
    }
}

fn pick(names: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    prop::sample::select(names)
}

/// Counts around the edges: none, a few, and the largest a host may claim.
fn count() -> impl Strategy<Value = u32> {
    prop_oneof![3 => 0u32..4, 1 => Just(u32::MAX), 1 => any::<u32>()]
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        pick(&["zone", "arch"]).prop_map(str::to_string),
        pick(&["1", "2"]).prop_map(str::to_string),
        0..2,
    )
}

fn image() -> impl Strategy<Value = String> {
    pick(&["v1", "v2", ""]).prop_map(str::to_string)
}

fn component_descriptions() -> impl Strategy<Value = Vec<ComponentDescription>> {
    prop::collection::vec(
        (pick(&IDS), image(), count()).prop_map(|(id, image_ref, max_instances)| {
            ComponentDescription {
                id: id.into(),
                image_ref,
                max_instances,
                ..Default::default()
            }
        }),
        0..4,
    )
}

fn provider_descriptions() -> impl Strategy<Value = Vec<ProviderDescription>> {
    prop::collection::vec(
        (pick(&PROVIDERS), prop::option::of(image())).prop_map(|(id, image_ref)| {
            ProviderDescription {
                id: id.into(),
                image_ref,
                ..Default::default()
            }
        }),
        0..3,
    )
}

fn heartbeat() -> impl Strategy<Value = HostHeartbeat> {
    (component_descriptions(), provider_descriptions(), labels()).prop_map(
        |(components, providers, labels)| HostHeartbeat {
            components,
            providers,
            labels,
            ..Default::default()
        },
    )
}

/// The host an event names: none (the sender), one of the hosts, or one never seen.
fn named_host() -> impl Strategy<Value = String> {
    pick(&["", "H1", "H2", "H3", "H9"]).prop_map(str::to_string)
}

fn event_spec() -> impl Strategy<Value = EventSpec> {
    prop_oneof![
        labels().prop_map(EventSpec::Started),
        Just(EventSpec::Stopped),
        heartbeat().prop_map(EventSpec::Heartbeat),
        (named_host(), pick(&IDS), image(), count()).prop_map(
            |(host_id, id, image_ref, max_instances)| EventSpec::Scaled(ComponentScaled {
                host_id,
                component_id: id.into(),
                image_ref,
                max_instances,
                ..Default::default()
            })
        ),
        pick(&IDS).prop_map(|id| EventSpec::ScaleFailed(id.into())),
        (named_host(), pick(&PROVIDERS), image()).prop_map(|(host_id, id, image_ref)| {
            EventSpec::ProviderStarted(ProviderStarted {
                host_id,
                provider_id: id.into(),
                image_ref,
                ..Default::default()
            })
        }),
        (named_host(), pick(&PROVIDERS)).prop_map(|(host_id, id)| {
            EventSpec::ProviderStopped(ProviderStopped {
                host_id,
                provider_id: id.into(),
                ..Default::default()
            })
        }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (pick(&HOSTS), event_spec(), prop_oneof![Just(0u64), 0u64..20])
            .prop_map(|(source, event, age)| Step::Event { source, event, age }),
        1 => (pick(&HOSTS), heartbeat()).prop_map(|(h, hb)| Step::HeartbeatTwice(h, hb)),
        1 => (pick(&HOSTS), component_descriptions(), provider_descriptions(), labels())
            .prop_map(|(host, components, providers, labels)| {
                Step::Inventory(HostInventory {
                    host_id: host.into(),
                    components,
                    providers,
                    labels,
                    ..Default::default()
                })
            }),
        1 => (1u64..40).prop_map(Step::Advance),
        1 => (0u64..40).prop_map(Step::Expire),
    ]
}

/// What a heartbeat or an inventory says runs on `host`, as the view shows it.
fn reported(
    host: &str,
    components: &[ComponentDescription],
    providers: &[ProviderDescription],
) -> BTreeMap<(char, String), (u32, String)> {
    let mut found = BTreeMap::new();
    // An entry at 0 does not run; of two entries for one id, the last one running counts.
    for c in components.iter().filter(|c| c.max_instances > 0) {
        found.insert(('c', c.id.clone()), (c.max_instances, c.image_ref.clone()));
    }
    for p in providers {
        found.insert(
            ('p', p.id.clone()),
            (1, p.image_ref.clone().unwrap_or_default()),
        );
    }
    let _ = host;
    found
}

fn on_host(view: &View, host: &str) -> BTreeMap<(char, String), (u32, String)> {
    view.instances
        .iter()
        .filter_map(|(key, hosts)| {
            hosts
                .get(host)
                .map(|(n, image, _)| (key.clone(), (*n, image.clone())))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// rollback

const VERSIONS: [&str; 5] = ["v1", "v2", "v3", "v4", "v5"];

fn stored_app() -> impl Strategy<Value = StoredApp> {
    (
        prop::sample::subsequence(VERSIONS.to_vec(), 0..=5),
        prop::option::of(pick(&VERSIONS)),
        prop::collection::vec(prop::option::of(pick(&VERSIONS)), 0..8),
    )
        .prop_map(|(stored, deployed, history)| {
            let manifest = Manifest::parse(
                "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: a\nspec:\n  components: []\n",
            )
            .unwrap();
            StoredApp {
                versions: stored
                    .into_iter()
                    .map(|v| StoredVersion {
                        version: v.into(),
                        manifest: manifest.clone(),
                        put_at: chrono::Utc::now(),
                    })
                    .collect(),
                deployed: deployed.map(str::to_string),
                history: history
                    .into_iter()
                    .map(|v| HistoryEntry {
                        version: v.map(str::to_string),
                        at: chrono::Utc::now(),
                        non_destructive: false,
                    })
                    .collect(),
                ..StoredApp::default()
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any text: findings or none, never a panic. Text that does not parse gives exactly one
    /// error; a manifest's findings come errors first, one error per place at most.
    #[test]
    fn validate_any_text(text in any_text()) {
        let found = validate_text(runtime_without_plugins(), &text);
        check_findings(&text, &found).map_err(TestCaseError::fail)?;
    }

    /// With no plugin loaded, the controller's own checks decide: each one fails exactly when
    /// its field is off, and a manifest with nothing off has no error.
    #[test]
    fn validate_finds_what_is_off(text in manifest_text()) {
        let found = validate_text(runtime_without_plugins(), &text);
        let manifest = Manifest::parse(&text).unwrap();
        let errors: BTreeSet<&str> = found
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.path.as_str())
            .collect();
        prop_assert_eq!(
            errors.contains("apiVersion"),
            manifest.api_version != "core.oam.dev/v1beta1"
        );
        prop_assert_eq!(errors.contains("kind"), manifest.kind != "Application");
        prop_assert_eq!(errors.contains("metadata.name"), !safe(manifest.name()));
        let mut clean = safe(manifest.name())
            && manifest.api_version == "core.oam.dev/v1beta1"
            && manifest.kind == "Application"
            && manifest.version() != "latest";
        for (ci, c) in manifest.spec.components.iter().enumerate() {
            // No plugin handles any trait type, so each trait is an error at its type.
            for ti in 0..c.traits.as_ref().map_or(0, Vec::len) {
                let path = format!("spec.components[{ci}].traits[{ti}].type");
                prop_assert!(errors.contains(path.as_str()), "{path} not reported: {found:?}");
                clean = false;
            }
            clean &= c.properties.id.as_deref().is_none_or(safe)
                && c.properties.config.iter().all(|k| safe(&k.name));
        }
        if clean {
            prop_assert!(errors.is_empty(), "{found:?}");
        }
    }

    /// What `encode` sends, `decode` reads back as the same command from the same origin
    /// (annotations travel with scale and start requests only).
    #[test]
    fn commands_decode_from_what_encode_sends(
        lattice in lattice_name(),
        command in command(),
        origin in origin(),
    ) {
        let subjects = ctl::Subjects::new(&lattice);
        let (subject, body) = encode(&subjects, &command, &origin);
        let decoded = decode(&subjects, &subject, &body);
        prop_assert!(decoded.is_some(), "{subject} {}", String::from_utf8_lossy(&body));
        let (back, from) = decoded.unwrap();
        let want = on_the_wire(&command);
        prop_assert!(same(&back, &want), "{:?} came back as {:?}", want, back);
        prop_assert_eq!(from, origin_on_the_wire(&command, &origin));
    }

    /// Any request: no panic; one that reads as a command is sent again on its own subject and
    /// reads back as itself.
    #[test]
    fn any_request_decodes_or_not((lattice, tail, body) in request()) {
        let subjects = ctl::Subjects::new(&lattice);
        let subject = format!("{}.{tail}", subjects.prefix());
        if let Some((command, origin)) = decode(&subjects, &subject, &body) {
            let (again, body) = encode(&subjects, &command, &origin);
            prop_assert_eq!(&again, &subject);
            let (back, from) = decode(&subjects, &again, &body).unwrap();
            prop_assert!(same(&back, &command), "{:?} != {:?}", back, command);
            prop_assert_eq!(from, origin);
        }
        // And any subject at all, under the prefix or not.
        let _ = decode(&subjects, &tail, &body);
    }

    /// The lattice state under any sequence of events, inventories and expiries.
    #[test]
    fn lattice_state_invariants(steps in prop::collection::vec(step(), 1..40)) {
        let start = Instant::now();
        let mut now = 20u64; // seconds after `start`; events may be up to 20 s old
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut state = LatticeState::default();
        for step in steps {
            let before = view(&state.snapshot(0));
            let seen_before: BTreeMap<String, Instant> =
                state.hosts.iter().map(|(id, h)| (id.clone(), h.last_seen)).collect();
            match &step {
                Step::Event { source, event, age } => {
                    let touched = state.apply(source, &event.event(), at(now - age));
                    let after = view(&state.snapshot(0));
                    check_touched(&before, &after, &touched).map_err(TestCaseError::fail)?;
                    match event {
                        EventSpec::Stopped => {
                            prop_assert!(!after.hosts.contains_key(*source));
                            prop_assert!(on_host(&after, source).is_empty());
                        }
                        EventSpec::Heartbeat(hb) => {
                            prop_assert_eq!(
                                on_host(&after, source),
                                reported(source, &hb.components, &hb.providers)
                            );
                        }
                        _ => {}
                    }
                }
                Step::HeartbeatTwice(source, hb) => {
                    let event = Event::HostHeartbeat(hb.clone());
                    let first = state.apply(source, &event, at(now));
                    let once = view(&state.snapshot(0));
                    check_touched(&before, &once, &first).map_err(TestCaseError::fail)?;
                    let second = state.apply(source, &event, at(now));
                    prop_assert_eq!(second, Touched::Nothing);
                    prop_assert_eq!(view(&state.snapshot(0)), once);
                }
                Step::Inventory(inv) => {
                    state.apply_inventory(inv, at(now));
                    let after = view(&state.snapshot(0));
                    prop_assert_eq!(
                        on_host(&after, &inv.host_id),
                        reported(&inv.host_id, &inv.components, &inv.providers)
                    );
                    prop_assert_eq!(
                        after.hosts.get(&inv.host_id),
                        Some(&inv.labels.clone().into_iter().collect::<Vec<_>>())
                    );
                }
                Step::Advance(secs) => now += secs,
                Step::Expire(timeout) => {
                    let timeout = Duration::from_secs(*timeout);
                    let gone = state.judge_hosts(timeout, at(now));
                    for id in &gone {
                        prop_assert!(seen_before.contains_key(id), "{id} expired but never seen");
                        prop_assert!(at(now).duration_since(seen_before[id]) > timeout);
                        prop_assert!(!state.hosts.contains_key(id));
                    }
                    for (id, host) in &state.hosts {
                        prop_assert!(at(now).duration_since(host.last_seen) <= timeout, "{id} stayed");
                    }
                    prop_assert_eq!(gone.len() + state.hosts.len(), seen_before.len());
                }
            }
            // A host's last sign of life never moves back, whatever order events come in.
            for (id, host) in &state.hosts {
                if let Some(seen) = seen_before.get(id) {
                    prop_assert!(host.last_seen >= *seen, "{id}'s last sign of life went back");
                }
            }
            check_snapshot(&state.snapshot(0)).map_err(TestCaseError::fail)?;
        }
    }

    /// A rollback goes to a version that is stored and is not the deployed one: the most
    /// recently deployed such. Rolling back twice returns to where one started.
    #[test]
    fn rollback_target_is_the_last_other_stored_version(app in stored_app()) {
        let target = app.rollback_target().map(str::to_string);
        let expected = (0..app.history.len()).rev().find_map(|i| {
            let v = app.history[i].version.as_deref()?;
            let stored = app.versions.iter().any(|s| s.version == v);
            (stored && Some(v) != app.deployed.as_deref()).then(|| v.to_string())
        });
        prop_assert_eq!(&target, &expected);
        if let Some(target) = target {
            prop_assert!(app.version(&target).is_some());
            prop_assert_ne!(Some(target.as_str()), app.deployed.as_deref());
            // Deploy it the way a rollback does, then roll back again.
            let mut rolled = app.clone();
            rolled.deployed = Some(target.clone());
            rolled.history.push(HistoryEntry {
                version: Some(target.clone()),
                at: chrono::Utc::now(),
                non_destructive: false,
            });
            let back = rolled.rollback_target();
            prop_assert_ne!(back, Some(target.as_str()));
            // As a store keeps an app (the deployed version is the last deployed, and stored),
            // a second rollback returns to where the first started.
            let consistent = app.history.last().map(|h| h.version.as_deref())
                == Some(app.deployed.as_deref());
            if let Some(d) = app.deployed.as_deref() {
                if consistent && app.version(d).is_some() {
                    prop_assert_eq!(back, Some(d));
                }
            }
        } else {
            let none_other_stored = app
                .history
                .iter()
                .filter_map(|h| h.version.as_deref())
                .all(|v| Some(v) == app.deployed.as_deref() || app.version(v).is_none());
            prop_assert!(none_other_stored);
        }
    }
}
