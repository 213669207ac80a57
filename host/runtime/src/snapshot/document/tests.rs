use proptest::prelude::*;

use super::*;

fn host(id: &str) -> HostEntry {
    HostEntry {
        id: id.into(),
        friendly_name: String::new(),
        labels: Labels::new(),
        uptime_seconds: 0,
        health: Health::Healthy,
        vitals: None,
    }
}

fn document(hosts: Vec<HostEntry>) -> LatticeDocument {
    LatticeDocument {
        format: DOCUMENT_FORMAT.into(),
        now_ms: 0,
        hosts,
        components: Vec::new(),
        providers: Vec::new(),
        links: Vec::new(),
        configs: BTreeMap::new(),
        traffic: Vec::new(),
        rotation: 0,
    }
}

/// The order `LatticeDocument::of` writes: hosts by id, instances by id then host.
fn normalised(mut doc: LatticeDocument) -> LatticeDocument {
    doc.hosts.sort_by(|a, b| a.id.cmp(&b.id));
    doc.components
        .sort_by(|a, b| (&a.component_id, &a.host_id).cmp(&(&b.component_id, &b.host_id)));
    doc.providers
        .sort_by(|a, b| (&a.provider_id, &a.host_id).cmp(&(&b.provider_id, &b.host_id)));
    doc.links.sort_by(|a, b| a.source_id.cmp(&b.source_id));
    doc.traffic
        .sort_by(|a, b| (&a.component_id, &a.host_id).cmp(&(&b.component_id, &b.host_id)));
    doc
}

#[test]
fn a_short_hand_written_state_reads_with_defaults() {
    let doc: LatticeDocument = serde_json::from_str(
        r#"{"format": "trellis.lattice/v1", "hosts": [{"id": "A", "labels": {"zone": "edge"}}],
            "components": [{"host_id": "A", "component_id": "shop-echo", "count": 2}]}"#,
    )
    .unwrap();
    let snapshot = doc.into_snapshot().unwrap();
    let host = snapshot.host("A").unwrap();
    assert_eq!(host.labels[0].key, "zone");
    assert_eq!(snapshot.component_counts("shop-echo")[0].count, 2);
    let vitals = snapshot.vitals.host("A");
    assert_eq!(vitals.health, Health::Healthy);
    assert!(!vitals.reported, "no vitals given: none reported");
    assert_eq!(snapshot.load_of("A"), 2);
}

#[test]
fn what_is_wrong_with_a_state_is_named() {
    let err = |doc: LatticeDocument| doc.into_snapshot().unwrap_err().to_string();
    let mut doc = document(vec![host("A")]);
    doc.format = "trellis.lattice/v9".into();
    assert!(err(doc).contains("`trellis.lattice/v9`"));
    assert!(err(document(vec![host("A"), host("A")])).contains("host `A` is listed twice"));
    let mut doc = document(vec![host("A")]);
    doc.components.push(ComponentEntry {
        host_id: "B".into(),
        component_id: "shop-echo".into(),
        image: String::new(),
        count: 1,
        annotations: Labels::new(),
    });
    assert_eq!(
        err(doc),
        "component `shop-echo` names host `B`, which is not in `hosts`: add the host or remove the entry"
    );
    let mut gone = host("A");
    gone.health = Health::Unreachable;
    assert!(err(document(vec![gone])).contains("`unreachable`"));
    // A misspelt field is refused by name rather than read as missing.
    let typo = serde_json::from_str::<LatticeDocument>(
        r#"{"format": "trellis.lattice/v1", "hosts": [{"id": "A", "lables": {}}]}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(typo.contains("unknown field `lables`"), "{typo}");
}

fn id() -> impl Strategy<Value = String> {
    "[A-D]"
}

fn labels_strategy() -> impl Strategy<Value = Labels> {
    prop::collection::btree_map("[a-c]", "[a-z]{0,3}", 0..3)
}

prop_compose! {
    fn host_entry()(
        id in id(),
        friendly_name in "[a-z]{0,4}",
        labels in labels_strategy(),
        uptime_seconds in 0u64..1_000_000,
        suspect in any::<bool>(),
        vitals in prop::option::of((1u32..64, 0.0f64..1.0, 0.0f64..1.0, 0u64..1 << 40, 0u64..1 << 40)),
    ) -> HostEntry {
        HostEntry {
            id,
            friendly_name,
            labels,
            uptime_seconds,
            health: if suspect { Health::Suspect } else { Health::Healthy },
            vitals: vitals.map(|(cpus, cpu_use, process_cpu_use, memory_total_bytes, memory_available_bytes)| Resources {
                cpus, cpu_use, process_cpu_use, memory_total_bytes, memory_available_bytes,
            }),
        }
    }
}

prop_compose! {
    /// A valid document: unique hosts, and everything on a host it lists.
    fn valid_document()(
        hosts in prop::collection::vec(host_entry(), 1..4),
        components in prop::collection::btree_map((id(), "[xy]"), (1u32..9, labels_strategy()), 0..6),
        providers in prop::collection::btree_map((id(), "[pq]"), labels_strategy(), 0..4),
        traffic in prop::collection::btree_map((id(), "[xy]"), (0u32..9, 0.0f64..100.0, 0.0f64..1.0), 0..4),
        links in prop::collection::vec(("[xy]", "[xy]", "[a-z]{1,3}"), 0..3),
        configs in prop::collection::btree_map("[a-c]{1,3}", labels_strategy(), 0..3),
        now_ms in 0u64..1 << 40,
        rotation in any::<u64>(),
    ) -> LatticeDocument {
        let mut hosts = hosts;
        hosts.sort_by(|a, b| a.id.cmp(&b.id));
        hosts.dedup_by(|a, b| a.id == b.id);
        let on = |h: &String| hosts.iter().any(|x| &x.id == h);
        LatticeDocument {
            format: DOCUMENT_FORMAT.into(),
            now_ms,
            components: components.into_iter().filter(|((h, _), _)| on(h)).map(|((host_id, c), (count, annotations))| ComponentEntry {
                host_id, component_id: c, image: "file:///c.wasm".into(), count, annotations,
            }).collect(),
            providers: providers.into_iter().filter(|((h, _), _)| on(h)).map(|((host_id, p), annotations)| ProviderEntry {
                host_id, provider_id: p, image: "builtin:http".into(), annotations,
            }).collect(),
            traffic: traffic.into_iter().filter(|((h, _), _)| on(h)).map(|((host_id, c), (in_flight, requests_per_second, error_rate))| TrafficEntry {
                component_id: c, host_id, in_flight, requests_per_second, p50_ms: 1.0, p99_ms: 2.0, error_rate, window_seconds: 10,
            }).collect(),
            links: links.into_iter().map(|(source_id, target, name)| LinkEntry {
                source_id, target, name, wit_namespace: "wasi".into(), wit_package: "http".into(),
                interfaces: vec!["incoming-handler".into()], source_config: Vec::new(), target_config: Vec::new(),
            }).collect(),
            configs,
            rotation,
            hosts,
        }
    }
}

proptest! {
    /// What a document says is what its snapshot answers: written back, it is the same.
    #[test]
    fn a_document_survives_the_snapshot(doc in valid_document()) {
        let back = LatticeDocument::of(&doc.clone().into_snapshot().unwrap());
        prop_assert_eq!(back, normalised(doc));
    }

    /// Any bytes: an error or a snapshot, never a panic.
    #[test]
    fn any_text_reads_or_is_refused(text in "\\PC{0,200}") {
        if let Ok(doc) = serde_json::from_str::<LatticeDocument>(&text) {
            let _ = doc.into_snapshot();
        }
    }

    /// Documents with hosts dropped: refused naming the missing host, never a panic.
    #[test]
    fn instances_on_missing_hosts_are_refused(doc in valid_document(), keep in 0usize..3) {
        let mut doc = doc;
        let had = doc.hosts.len();
        doc.hosts.truncate(keep.min(had));
        let listed = |id: &String| doc.hosts.iter().any(|h| &h.id == id);
        let orphaned = doc.components.iter().any(|c| !listed(&c.host_id))
            || doc.providers.iter().any(|p| !listed(&p.host_id))
            || doc.traffic.iter().any(|t| !listed(&t.host_id));
        match doc.into_snapshot() {
            Ok(_) => prop_assert!(!orphaned),
            Err(e) => {
                let named = matches!(e, DocumentError::UnknownHost { .. });
                prop_assert!(named, "{}", e);
            }
        }
    }
}
