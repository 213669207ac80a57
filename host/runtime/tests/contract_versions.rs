//! Plugins built against contract 0.1.0 keep loading and working under 0.2.0: the runtime
//! links both versions' imports and converts what differs in their exports. The fixtures in
//! `tests/fixtures/contract-0.1.0/` are the built-in spread scaler and placement as built
//! against 0.1.0 (see the README there); they must decide exactly as their current builds do.

use std::sync::Arc;

use trellis_runtime::bindings::{
    ComponentInstance, ComponentKind, ComponentSpec, HostInfo, Pair, PlacementRequest,
    ScalerContext,
};
use trellis_runtime::{Contract, Health, HostVitals, LatticeSnapshot};

mod common;

use common::runtime_with_files as runtime_of;

fn pair(key: &str, value: &str) -> Pair {
    Pair {
        key: key.into(),
        value: value.into(),
    }
}

/// Eight hosts in two regions, two instances running, one host suspect.
fn snapshot() -> Arc<LatticeSnapshot> {
    let hosts = (0..8).map(|i| HostInfo {
        id: format!("host-{i}"),
        friendly_name: format!("node {i}"),
        labels: vec![pair("region", if i % 2 == 0 { "east" } else { "west" })],
        uptime_seconds: 60,
    });
    let mut snap = LatticeSnapshot::of_hosts(hosts);
    for host in ["host-0", "host-3"] {
        snap.put_component(ComponentInstance {
            host_id: host.into(),
            component_id: "shop-web".into(),
            image: "file:///web.wasm".into(),
            count: 1,
            annotations: vec![pair("wasmcloud.dev/appspec", "shop")],
        });
    }
    snap.vitals.set_host(
        "host-2",
        HostVitals {
            health: Health::Suspect,
            ..HostVitals::default()
        },
    );
    Arc::new(snap)
}

fn context() -> ScalerContext {
    let spec = ComponentSpec {
        name: "web".into(),
        kind: ComponentKind::Component,
        image: "file:///web.wasm".into(),
        id: "shop-web".into(),
        config: vec![],
    };
    ScalerContext {
        app: "shop".into(),
        version: "v1".into(),
        component: spec.clone(),
        components: vec![spec],
        trait_type: "spreadscaler".into(),
        properties: r#"{"instances": 6, "spread": [{"name": "east", "requirements": {"region": "east"}, "weight": 50}, {"name": "west", "requirements": {"region": "west"}, "weight": 50}]}"#.into(),
        memo: None,
    }
}

#[test]
fn plugins_built_against_0_1_0_load_and_decide_as_their_current_builds() {
    let (old, _old_dir) = runtime_of(&[
        "host/runtime/tests/fixtures/contract-0.1.0/spreadscaler.wasm",
        "host/runtime/tests/fixtures/contract-0.1.0/placement.wasm",
    ]);
    let (new, _new_dir) = runtime_of(&[
        "build/plugins/spreadscaler.wasm",
        "build/plugins/placement.wasm",
    ]);
    let (old_set, new_set) = (old.plugins(), new.plugins());
    assert!(old_set.problems.is_empty(), "{:?}", old_set.problems);
    let contracts = |set: &trellis_runtime::PluginSet| -> Vec<(String, Contract)> {
        set.summaries()
            .into_iter()
            .map(|s| (s.name, s.contract))
            .collect()
    };
    assert_eq!(
        contracts(&old_set),
        [
            ("default-placement".to_string(), Contract::V0_1),
            ("spreadscaler".to_string(), Contract::V0_1)
        ]
    );
    assert!(contracts(&new_set)
        .iter()
        .all(|(_, c)| *c == Contract::V0_2));

    let snap = snapshot();
    // A 0.1.0 placement plugin ranks through 0.1.0's imports; the suspect host is passed over
    // by the runtime whatever the plugin's version.
    let request = PlacementRequest {
        component_id: "shop-web".into(),
        requirements: vec![pair("region", "east")],
    };
    let old_rank = trellis_runtime::placement::rank(&old_set.placements, &snap, &request).unwrap();
    let new_rank = trellis_runtime::placement::rank(&new_set.placements, &snap, &request).unwrap();
    assert_eq!(old_rank, new_rank);
    assert_eq!(old_rank, ["host-4", "host-6", "host-0"]);

    // A 0.1.0 scaler reconciles through 0.1.0's lattice view and ranking; its result (without
    // `recheck-after-ms`) is converted.
    let ctx = context();
    let old_scaler = old_set.scaler_for("spreadscaler").unwrap();
    let new_scaler = new_set.scaler_for("spreadscaler").unwrap();
    let old_result = old_scaler
        .reconcile(&ctx, &snap, old_set.placements.clone())
        .unwrap();
    let new_result = new_scaler
        .reconcile(&ctx, &snap, new_set.placements.clone())
        .unwrap();
    assert_eq!(old_result.recheck_after_ms, None);
    assert_eq!(
        format!("{:?}", old_result.commands),
        format!("{:?}", new_result.commands)
    );
    assert_eq!(old_result.commands.len(), 4, "{:?}", old_result.commands);
    assert!(
        !format!("{:?}", old_result.commands).contains("host-2"),
        "the suspect host got work: {:?}",
        old_result.commands
    );
}

/// A 0.2.0 placement plugin reads hosts' vitals through the lattice view, and takes part only
/// in the rankings of apps that name its policy.
#[test]
fn the_load_aware_policy_reads_vitals_and_is_opt_in() {
    let (runtime, _dir) = runtime_of(&[
        "build/plugins/placement.wasm",
        "build/plugins/loadaware.wasm",
    ]);
    let set = runtime.plugins();
    assert!(set.problems.is_empty(), "{:?}", set.problems);
    assert_eq!(set.policies.keys().collect::<Vec<_>>(), ["load-aware"]);
    let hosts = ["a", "b", "c"].map(|id| HostInfo {
        id: id.into(),
        friendly_name: id.into(),
        labels: vec![],
        uptime_seconds: 1,
    });
    let mut snap = LatticeSnapshot::of_hosts(hosts);
    for (id, own) in [("a", 0.45), ("b", 0.02), ("c", 0.03)] {
        snap.vitals.set_host(
            id,
            HostVitals {
                reported: true,
                cpus: 2,
                cpu_use: 0.5,
                process_cpu_use: own,
                memory_total_bytes: 8 << 30,
                memory_available_bytes: 4 << 30,
                ..HostVitals::default()
            },
        );
    }
    // The busy host runs nothing, so the default ranking puts it first (by id).
    let snap = Arc::new(snap);
    let request = PlacementRequest {
        component_id: "shop-web".into(),
        requirements: vec![],
    };
    let default = set.placements_for(None).unwrap();
    assert_eq!(
        trellis_runtime::placement::rank(&default, &snap, &request).unwrap(),
        ["a", "b", "c"]
    );
    let load_aware = set.placements_for(Some("load-aware")).unwrap();
    assert_eq!(
        trellis_runtime::placement::rank(&load_aware, &snap, &request).unwrap(),
        ["b", "c", "a"]
    );
    let unknown = set.placements_for(Some("load-awre")).unwrap_err();
    assert!(
        unknown.contains("`load-awre`") && unknown.contains("load-aware"),
        "{unknown}"
    );
}
