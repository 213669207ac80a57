//! Property tests of the wire types (issue 16: bad input costs at most its size): whatever text
//! arrives, parsing answers with a value or an error and never panics, and what trellis writes
//! reads back as the same value. Bounded case counts keep `cargo test` quick; the fuzz targets
//! in `fuzz/` run the same parsers for as long as one likes.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::Value;
use trellis_lattice::api::{
    DeleteModelRequest, DeployModelRequest, GetModelRequest, ListModelsRequest, Operation,
    PlanRequest, Subjects, UndeployModelRequest,
};
use trellis_lattice::ctl::{ComponentDescription, Link, ProviderDescription};
use trellis_lattice::event::{self, CloudEvent, Event};
use trellis_lattice::manifest::{
    Component, ComponentProperties, ComponentType, ConfigProperty, Metadata, Policy,
    SharedApplication, Specification, Trait,
};
use trellis_lattice::Manifest;

/// Short text of any characters, with the ones YAML and JSON treat specially made likely:
/// quotes, colons, `#`, newlines, leading spaces and words YAML might read as other types.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>().prop_map(|s| s.chars().take(12).collect()),
        2 => "[a-z0-9 :#'\"\\-\n\t{}\\[\\],&*!|>%@`.~]{0,10}",
        1 => prop::sample::select(vec![
            "", "null", "~", "true", "false", "yes", "no", "on", "off", "y", "n", "1", "-1",
            "0x1f", "0o17", "1e3", "1.5", ".inf", "-.inf", ".nan", "NaN", "2001-12-14", "<<",
            "- a", "a: b", "? x", "---", "...", " lead", "trail ", "\u{feff}bom", "\u{85}nel",
        ])
        .prop_map(str::to_string),
    ]
}

fn map() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(text(), text(), 0..3)
}

/// Any JSON value serde_json can hold (no NaN or infinities), a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn component() -> impl Strategy<Value = Component> {
    let properties = (
        prop::option::of(text()),
        prop::option::of((text(), text())),
        prop::option::of(text()),
        prop::collection::vec((text(), prop::option::of(map())), 0..3),
        prop::collection::vec(json(), 0..2),
    )
        .prop_map(
            |(image, application, id, config, secrets)| ComponentProperties {
                image,
                application: application
                    .map(|(name, component)| SharedApplication { name, component }),
                id,
                config: config
                    .into_iter()
                    .map(|(name, properties)| ConfigProperty { name, properties })
                    .collect(),
                secrets,
            },
        );
    let traits = prop::option::of(prop::collection::vec(
        (text(), json()).prop_map(|(trait_type, properties)| Trait {
            trait_type,
            properties,
        }),
        0..3,
    ));
    (
        text(),
        prop::bool::ANY.prop_map(|c| {
            if c {
                ComponentType::Component
            } else {
                ComponentType::Capability
            }
        }),
        properties,
        traits,
    )
        .prop_map(|(name, component_type, properties, traits)| Component {
            name,
            component_type,
            properties,
            traits,
        })
}

fn manifest() -> impl Strategy<Value = Manifest> {
    let policies = prop::collection::vec(
        (text(), text(), map()).prop_map(|(name, policy_type, properties)| Policy {
            name,
            policy_type,
            properties,
        }),
        0..2,
    );
    (
        text(),
        text(),
        text(),
        map(),
        map(),
        prop::collection::vec(component(), 0..3),
        policies,
    )
        .prop_map(
            |(api_version, kind, name, annotations, labels, components, policies)| Manifest {
                api_version,
                kind,
                metadata: Metadata {
                    name,
                    annotations,
                    labels,
                },
                spec: Specification {
                    components,
                    policies,
                },
            },
        )
}

/// The tail of the subject (after `wadm.api.{lattice}.model.`) that names `op`.
fn tail_of(op: &Operation) -> String {
    let subjects = Subjects::new("l");
    let subject = subjects.operation(op);
    subject
        .strip_prefix(&format!("{}.", subjects.model_prefix()))
        .expect("every operation's subject is under the model prefix")
        .to_string()
}

fn operation() -> impl Strategy<Value = Operation> {
    let name = "[a-zA-Z0-9_.*>-]{0,12}";
    prop_oneof![
        Just(Operation::Put),
        Just(Operation::List),
        Just(Operation::GetAll),
        name.prop_map(Operation::Get),
        name.prop_map(Operation::Versions),
        name.prop_map(Operation::Del),
        name.prop_map(Operation::Deploy),
        name.prop_map(Operation::Undeploy),
        name.prop_map(Operation::Status),
        name.prop_map(Operation::History),
    ]
}

/// Subject tails: mostly near-misses of real ones, some anything at all.
fn subject_tail() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            prop::sample::select(vec![
                "put", "list", "get", "versions", "del", "deploy", "undeploy", "status", "history",
                "PUT", "", "plan", "rollback",
            ]),
            prop::option::of("[a-z.]{0,6}"),
        )
            .prop_map(|(op, rest)| match rest {
                Some(rest) => format!("{op}.{rest}"),
                None => op.to_string(),
            }),
        any::<String>(),
    ]
}

/// JSON bodies near the request shapes: the real fields, misspelt ones, wrong types.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let field = prop::sample::select(vec![
        "version",
        "verison",
        "non_destructive",
        "nondestructive",
        "offset",
        "limit",
        "",
    ]);
    prop_oneof![
        prop::collection::btree_map(field, json(), 0..3)
            .prop_map(|m| { serde_json::to_vec(&m).unwrap() }),
        json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        prop::collection::vec(any::<u8>(), 0..32),
    ]
}

fn labels_json() -> impl Strategy<Value = Value> {
    map().prop_map(|m| serde_json::to_value(m).unwrap())
}

/// An event payload of `kind` as a host would send it, with fields of the right types.
fn payload(kind: &'static str) -> BoxedStrategy<Value> {
    use serde_json::json;
    let s = text;
    match kind {
        event::HOST_STARTED => (labels_json(), s(), any::<u64>(), s())
            .prop_map(|(l, f, u, v)| {
                json!({"labels": l, "friendly_name": f, "uptime_seconds": u, "version": v})
            })
            .boxed(),
        event::HOST_STOPPED => labels_json().prop_map(|l| json!({"labels": l})).boxed(),
        event::HOST_HEARTBEAT => (
            prop::collection::vec((s(), s(), any::<u32>(), any::<i32>()), 0..3),
            prop::collection::vec((s(), prop::option::of(s())), 0..3),
            labels_json(),
            s(),
            any::<u64>(),
        )
            .prop_map(|(components, providers, l, f, u)| {
                let components: Vec<ComponentDescription> = components
                    .into_iter()
                    .map(|(id, image_ref, max_instances, revision)| ComponentDescription {
                        id,
                        image_ref,
                        max_instances,
                        revision,
                        ..Default::default()
                    })
                    .collect();
                let providers: Vec<ProviderDescription> = providers
                    .into_iter()
                    .map(|(id, image_ref)| ProviderDescription {
                        id,
                        image_ref,
                        ..Default::default()
                    })
                    .collect();
                json!({"components": components, "providers": providers, "labels": l,
                       "friendly_name": f, "uptime_seconds": u})
            })
            .boxed(),
        event::COMPONENT_SCALED | event::COMPONENT_SCALE_FAILED => {
            (labels_json(), s(), s(), any::<u32>(), s(), s())
                .prop_map(|(a, h, i, m, c, e)| {
                    json!({"annotations": a, "host_id": h, "image_ref": i, "max_instances": m,
                           "component_id": c, "error": e})
                })
                .boxed()
        }
        event::PROVIDER_STARTED | event::PROVIDER_STOPPED | event::PROVIDER_START_FAILED => {
            (labels_json(), s(), s(), s())
                .prop_map(|(a, h, i, p)| {
                    json!({"annotations": a, "host_id": h, "image_ref": i, "provider_ref": i,
                           "provider_id": p, "reason": "", "error": ""})
                })
                .boxed()
        }
        event::LINKDEF_SET => (s(), s(), s(), s(), s(), prop::collection::vec(s(), 0..3))
            .prop_map(|(source_id, target, name, wit_namespace, wit_package, interfaces)| {
                serde_json::to_value(Link {
                    source_id,
                    target,
                    name,
                    wit_namespace,
                    wit_package,
                    interfaces,
                    ..Default::default()
                })
                .unwrap()
            })
            .boxed(),
        event::LINKDEF_DELETED => (s(), s())
            .prop_map(|(source_id, name)| json!({"source_id": source_id, "name": name}))
            .boxed(),
        _ => s().prop_map(|c| json!({ "config_name": c })).boxed(),
    }
}

/// The kind a decoded event is of, as `CloudEvent::kind` names it.
fn kind_of(event: &Event) -> &'static str {
    match event {
        Event::HostStarted(_) => event::HOST_STARTED,
        Event::HostStopped(_) => event::HOST_STOPPED,
        Event::HostHeartbeat(_) => event::HOST_HEARTBEAT,
        Event::ComponentScaled(_) => event::COMPONENT_SCALED,
        Event::ComponentScaleFailed(_) => event::COMPONENT_SCALE_FAILED,
        Event::ProviderStarted(_) => event::PROVIDER_STARTED,
        Event::ProviderStopped(_) => event::PROVIDER_STOPPED,
        Event::ProviderStartFailed(_) => event::PROVIDER_START_FAILED,
        Event::LinkdefSet(_) => event::LINKDEF_SET,
        Event::LinkdefDeleted(_) => event::LINKDEF_DELETED,
        Event::ConfigSet(_) => event::CONFIG_SET,
        Event::ConfigDeleted(_) => event::CONFIG_DELETED,
        Event::Other => "other",
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// What the store writes (JSON) reads back as the same manifest.
    #[test]
    fn manifest_json_round_trip(m in manifest()) {
        let json = serde_json::to_string(&m).unwrap();
        let back = Manifest::parse(&json);
        prop_assert!(back.is_ok(), "{json}\n{:?}", back.err());
        prop_assert_eq!(back.unwrap(), m);
    }

    /// What `trellis app get -o yaml` prints reads back as the same manifest.
    #[test]
    fn manifest_yaml_round_trip(m in manifest()) {
        let yaml = serde_yaml_ng::to_string(&m).unwrap();
        let back = Manifest::parse(&yaml);
        prop_assert!(back.is_ok(), "{yaml}\n{:?}", back.err());
        prop_assert_eq!(back.unwrap(), m);
    }

    /// `parse_versioned` is `parse` plus a version check, nothing else.
    #[test]
    fn parse_versioned_is_parse_with_a_version(m in manifest(), version in text()) {
        let mut m = m;
        m.metadata.annotations.insert("version".into(), version.clone());
        let json = serde_json::to_string(&m).unwrap();
        match Manifest::parse_versioned(&json) {
            Ok(back) => prop_assert_eq!(back, m),
            Err(trellis_lattice::ManifestError::MissingVersion) => {
                prop_assert!(version.is_empty())
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    /// Any text at all: an error or a manifest, never a panic; a syntax error's location, when
    /// given, is within the text.
    #[test]
    fn any_text_parses_or_errs(text in prop_oneof![
        any::<String>(),
        manifest().prop_map(|m| serde_yaml_ng::to_string(&m).unwrap()),
    ], cut in any::<prop::sample::Index>()) {
        // Cut at a character boundary, so that truncated manifests are tried too.
        let chars: Vec<char> = text.chars().collect();
        let text: String = chars[..cut.index(chars.len() + 1)].iter().collect();
        if let Err(trellis_lattice::ManifestError::Syntax { line: Some(line), .. }) =
            Manifest::parse(&text)
        {
            // YAML also breaks lines at \r, NEL, LS and PS, so count those as well; libyaml
            // puts an error at the end of the text on the line after the last.
            let breaks = text
                .chars()
                .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
                .count();
            prop_assert!(line <= breaks + 2, "line {line} of {text:?}");
        }
    }

    /// Every subject tail trellis builds parses to the operation it was built from.
    #[test]
    fn operations_round_trip(op in operation()) {
        prop_assert_eq!(Operation::parse(&tail_of(&op)), Some(op));
    }

    /// Any tail: no panic, and an operation only when the tail is exactly that operation's.
    #[test]
    fn any_subject_tail_parses_only_to_itself(tail in subject_tail()) {
        if let Some(op) = Operation::parse(&tail) {
            prop_assert_eq!(tail_of(&op), tail);
        }
    }

    /// Request bodies: anything gives a request or an error. What a client writes reads back.
    #[test]
    fn request_bodies_never_panic(body in body()) {
        let _ = serde_json::from_slice::<GetModelRequest>(&body);
        let _ = serde_json::from_slice::<DeleteModelRequest>(&body);
        let _ = serde_json::from_slice::<DeployModelRequest>(&body);
        let _ = serde_json::from_slice::<UndeployModelRequest>(&body);
        let _ = serde_json::from_slice::<PlanRequest>(&body);
        let _ = serde_json::from_slice::<ListModelsRequest>(&body);
    }

    #[test]
    fn request_bodies_round_trip(
        version in prop::option::of(text()),
        flag in any::<bool>(),
        offset in any::<usize>(),
        limit in prop::option::of(any::<usize>()),
    ) {
        let get: GetModelRequest =
            serde_json::from_slice(&serde_json::to_vec(&GetModelRequest { version: version.clone() }).unwrap()).unwrap();
        prop_assert_eq!(&get.version, &version);
        let del: DeleteModelRequest =
            serde_json::from_slice(&serde_json::to_vec(&DeleteModelRequest { version: version.clone() }).unwrap()).unwrap();
        prop_assert_eq!(&del.version, &version);
        let deploy: DeployModelRequest =
            serde_json::from_slice(&serde_json::to_vec(&DeployModelRequest { version: version.clone() }).unwrap()).unwrap();
        prop_assert_eq!(&deploy.version, &version);
        let plan: PlanRequest =
            serde_json::from_slice(&serde_json::to_vec(&PlanRequest { version: version.clone() }).unwrap()).unwrap();
        prop_assert_eq!(&plan.version, &version);
        let undeploy: UndeployModelRequest = serde_json::from_slice(
            &serde_json::to_vec(&UndeployModelRequest { non_destructive: flag }).unwrap(),
        )
        .unwrap();
        prop_assert_eq!(undeploy.non_destructive, flag);
        let list: ListModelsRequest = serde_json::from_slice(
            &serde_json::to_vec(&ListModelsRequest { offset, limit }).unwrap(),
        )
        .unwrap();
        prop_assert_eq!((list.offset, list.limit), (offset, limit));
    }

    /// Any JSON as an event envelope, any data for any kind: decoding answers, never panics.
    #[test]
    fn any_cloudevent_decodes_or_errs(
        kind in prop_oneof![prop::sample::select(event::KINDS.to_vec()).prop_map(str::to_string), text()],
        prefixed in any::<bool>(),
        data in json(),
        envelope in json(),
    ) {
        let event_type = if prefixed { format!("{}{kind}", event::TYPE_PREFIX) } else { kind };
        let ev = serde_json::json!({
            "specversion": "1.0", "id": "1", "type": event_type, "source": "N", "data": data,
        });
        let parsed: CloudEvent = serde_json::from_value(ev).unwrap();
        let _ = parsed.decode();
        if let Ok(other) = serde_json::from_value::<CloudEvent>(envelope) {
            let _ = other.decode();
        }
    }

    /// What a host sends decodes as the event of that kind, whatever the payload's values.
    #[test]
    fn host_events_decode_as_their_kind(
        (kind, data) in prop::sample::select(event::KINDS.to_vec())
            .prop_flat_map(|kind| (Just(kind), payload(kind))),
    ) {
        let sent = CloudEvent::new(kind, "NHOST", &data);
        let wire = serde_json::to_vec(&sent).unwrap();
        let received: CloudEvent = serde_json::from_slice(&wire).unwrap();
        prop_assert_eq!(received.kind(), kind);
        let decoded = received.decode();
        prop_assert!(decoded.is_ok(), "{kind}: {:?} from {data}", decoded.err());
        prop_assert_eq!(kind_of(&decoded.unwrap()), kind);
    }
}

/// Found by `manifest_json_round_trip`: serde_json's default float parser read this value back
/// one ulp off, so the stored manifest differed from the one put.
#[test]
fn a_float_property_survives_the_store() {
    let text = r#"{"apiVersion":"core.oam.dev/v1beta1","kind":"Application",
        "metadata":{"name":"a","annotations":{"version":"v1"}},
        "spec":{"components":[{"name":"c","type":"component","properties":{"image":"i"},
        "traits":[{"type":"t","properties":{"x":-4.4287912621311834e100,"y":0.30000000000000004}}]}]}}"#;
    let m = Manifest::parse(text).unwrap();
    let props = &m.spec.components[0].traits.as_ref().unwrap()[0].properties;
    assert_eq!(props["x"].as_f64(), Some(-4.4287912621311834e100));
    assert_eq!(props["y"].as_f64(), Some(0.1 + 0.2));
    let again = Manifest::parse(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(again, m);
}
