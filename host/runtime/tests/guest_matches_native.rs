//! The built-in spreadscaler as a wasm component decides exactly as the same code compiled
//! natively. The plugin build runs on the SDK's own allocator and `memcmp` (sdk/src/heap.rs,
//! sdk/src/memcmp.rs), which the scaler's native unit tests never exercise: a wrong
//! comparison would reorder host ids and change the commands, a heap bug would corrupt them or
//! trap. The lattices are large enough (thousands of hosts, many allocations of every size
//! class, blocks reused after being freed) to reach past a first chunk. Some instances run an
//! older image and some run on hosts that left the lattice, so the guest's batched queries
//! (`component-counts`, `hosts-by-id` with ids the lattice no longer has) are on the path too.

use std::sync::Arc;

use trellis_plugin_spreadscaler::SpreadScaler;
use trellis_runtime::bindings::{
    Command, ComponentInstance, ComponentKind, ComponentSpec, HostInfo, Pair, ScalerContext, Status,
};
use trellis_runtime::{LatticeSnapshot, Placements, Shortlist};
use trellis_sdk::testing::TestLattice;
use trellis_sdk::Scaler;

mod common;

const APP: &str = "shop";
const ID: &str = "shop-web";
const IMAGE: &str = "file:///web.wasm";
const OLD_IMAGE: &str = "file:///web-0.9.wasm";

/// The image the instance on host `i` runs: every 13th an older one, to be replaced.
fn image_on(i: usize) -> &'static str {
    if i % 13 == 12 {
        OLD_IMAGE
    } else {
        IMAGE
    }
}
const REGIONS: [&str; 3] = ["east", "west", "north"];

/// Host ids that share long prefixes and differ at every position of an 8-byte word, so that
/// ordering depends on each byte the comparison looks at.
fn host_id(i: usize) -> String {
    format!("host-{:02x}-{}", i % 251, i * 7919 % 10007)
}

fn region(i: usize) -> &'static str {
    REGIONS[i % REGIONS.len()]
}

/// `running[k]` = (host index, count).
fn lattices(hosts: usize, running: &[(usize, u32)]) -> (Arc<LatticeSnapshot>, TestLattice) {
    let mut wasm_hosts = Vec::new();
    let mut native = TestLattice::new().for_app(APP);
    for i in 0..hosts {
        let labels = [
            ("region", region(i)),
            ("tier", if i % 5 == 0 { "edge" } else { "core" }),
        ];
        wasm_hosts.push(HostInfo {
            id: host_id(i),
            friendly_name: format!("node {i}"),
            labels: labels
                .iter()
                .map(|(k, v)| Pair {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            uptime_seconds: i as u64,
        });
        native = native.with_host_info(trellis_sdk::Host {
            id: host_id(i),
            friendly_name: format!("node {i}"),
            labels: trellis_sdk::label_map(&labels),
            uptime_seconds: i as u64,
        });
    }
    let mut snap = LatticeSnapshot::of_hosts(wasm_hosts);
    let instances: Vec<ComponentInstance> = running
        .iter()
        .map(|&(i, count)| ComponentInstance {
            host_id: host_id(i),
            component_id: ID.into(),
            image: image_on(i).into(),
            count,
            annotations: vec![Pair {
                key: trellis_sdk::diff::APP_ANNOTATION.into(),
                value: APP.into(),
            }],
        })
        .collect();
    for &(i, count) in running {
        native = native.with_component_instance(trellis_sdk::ComponentInstance {
            host_id: host_id(i),
            component_id: ID.into(),
            image: image_on(i).into(),
            count,
            annotations: trellis_sdk::label_map(&[(trellis_sdk::diff::APP_ANNOTATION, APP)]),
        });
    }
    for instance in instances {
        snap.put_component(instance);
    }
    (Arc::new(snap), native)
}

fn contexts(properties: &str) -> (ScalerContext, trellis_sdk::ScalerContext) {
    let spec = ComponentSpec {
        name: "web".into(),
        kind: ComponentKind::Component,
        image: IMAGE.into(),
        id: ID.into(),
        config: vec!["web-config".into()],
    };
    let wasm = ScalerContext {
        app: APP.into(),
        version: "v1".into(),
        component: spec.clone(),
        components: vec![spec],
        trait_type: "spreadscaler".into(),
        properties: properties.into(),
        memo: None,
    };
    let native = trellis_sdk::ScalerContext {
        app: APP.into(),
        version: "v1".into(),
        component: trellis_sdk::ComponentSpec {
            name: "web".into(),
            kind: trellis_sdk::ComponentKind::Component,
            image: IMAGE.into(),
            id: ID.into(),
            config: vec!["web-config".into()],
        },
        components: Vec::new(),
        trait_type: "spreadscaler".into(),
        properties: properties.into(),
        memo: None,
    };
    let native = trellis_sdk::ScalerContext {
        components: vec![native.component.clone()],
        ..native
    };
    (wasm, native)
}

/// Scale commands as (host, count), in the order given.
fn wasm_scales(commands: &[Command]) -> Vec<(String, u32, String)> {
    commands
        .iter()
        .map(|c| match c {
            Command::ScaleComponent(s) => (s.host_id.clone(), s.count, s.image.clone()),
            other => panic!("unexpected command {other:?}"),
        })
        .collect()
}

fn native_scales(commands: &[trellis_sdk::Command]) -> Vec<(String, u32, String)> {
    commands
        .iter()
        .map(|c| match c {
            trellis_sdk::Command::ScaleComponent {
                host_id,
                count,
                image,
                ..
            } => (host_id.clone(), *count, image.clone()),
            other => panic!("unexpected command {other:?}"),
        })
        .collect()
}

fn wasm_status(status: &Status) -> String {
    match status {
        Status::Deployed => "deployed".into(),
        Status::Reconciling(why) => format!("reconciling: {why}"),
        Status::Failed(why) => format!("failed: {why}"),
        Status::Waiting(why) => format!("waiting: {why}"),
    }
}

fn native_status(status: &trellis_sdk::Status) -> String {
    match status {
        trellis_sdk::Status::Deployed => "deployed".into(),
        trellis_sdk::Status::Reconciling(why) => format!("reconciling: {why}"),
        trellis_sdk::Status::Failed(why) => format!("failed: {why}"),
        trellis_sdk::Status::Waiting(why) => format!("waiting: {why}"),
    }
}

#[test]
fn wasm_spreadscaler_decides_as_native() {
    let (runtime, _dir) = common::runtime_with_built("spreadscaler");
    let plugins = runtime.plugins();
    let scaler = plugins
        .scaler_for("spreadscaler")
        .unwrap_or_else(|| panic!("spreadscaler not loaded: {:?}", plugins.problems));

    let spread = r#"{"instances": 40, "spread": [
        {"name": "east-edge", "requirements": {"region": "east", "tier": "edge"}, "weight": 1},
        {"name": "west", "requirements": {"region": "west"}, "weight": 2},
        {"name": "rest", "weight": 1}]}"#;
    // (hosts, running instances as (host index, count), the trait's properties)
    type Case = (usize, Vec<(usize, u32)>, &'static str);
    let cases: Vec<Case> = vec![
        // Settled on a few hosts, grown from nothing, shrunk, and spread over thousands.
        (30, vec![(0, 2), (1, 1), (7, 3)], r#"{"instances": 6}"#),
        // Hosts 31 and 40 are gone from the lattice; host 12 runs the older image.
        (
            30,
            vec![(0, 1), (12, 2), (31, 2), (40, 1)],
            r#"{"instances": 5}"#,
        ),
        (300, vec![], spread),
        (
            300,
            (0..60).map(|i| (i * 3, 2)).collect(),
            r#"{"instances": 25}"#,
        ),
        (4000, (0..200).map(|i| (i * 17, 1)).collect(), spread),
        (4000, vec![], r#"{"instances": 500}"#),
    ];
    // The native test lattice ranks every qualifying host; so does the runtime with no
    // shortlist. (With one, the same instances land on hosts of the shortlist: checked below.)
    let whole = Placements {
        plugins: plugins.placements.plugins.clone(),
        shortlist: Shortlist::ALL,
    };
    for (hosts, running, properties) in cases {
        let (snapshot, lattice) = lattices(hosts, &running);
        let (wasm_ctx, native_ctx) = contexts(properties);
        let native = SpreadScaler::reconcile(&native_ctx, &lattice);
        let shortlisted = scaler
            .reconcile(&wasm_ctx, &snapshot, plugins.placements.clone())
            .unwrap();
        let placed = |scales: &[(String, u32, String)]| -> (usize, u32) {
            (scales.len(), scales.iter().map(|(_, n, _)| n).sum())
        };
        let (with_shortlist, without) = (
            placed(&wasm_scales(&shortlisted.commands)),
            placed(&native_scales(&native.commands)),
        );
        // As many instances, on at least as many hosts: a spread's ranking no longer starts at
        // the hosts another spread of the same call just took.
        assert_eq!(with_shortlist.1, without.1, "{hosts} hosts, {properties}");
        assert!(
            with_shortlist.0 >= without.0,
            "{with_shortlist:?} against {without:?}: {hosts} hosts, {properties}"
        );
        // Twice: the second call runs in a recycled instance slot.
        for round in 0..2 {
            let wasm = scaler
                .reconcile(&wasm_ctx, &snapshot, whole.clone())
                .unwrap_or_else(|e| panic!("{hosts} hosts, round {round}: {e}"));
            assert_eq!(
                wasm_scales(&wasm.commands),
                native_scales(&native.commands),
                "{hosts} hosts, {} running, {properties}",
                running.len()
            );
            assert_eq!(wasm_status(&wasm.status), native_status(&native.status));
        }
    }
}
