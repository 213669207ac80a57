//! The plugin runtime against real guest components that misbehave: each fault fails its call
//! with a clear reason, and the runtime carries on serving the others.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use trellis_runtime::bindings::{ComponentKind, ComponentSpec, HostInfo, ScalerContext};
use trellis_runtime::{Fault, LatticeSnapshot, Limits, LoadError, Runtime, RuntimeConfig};

fn fixture(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../build/fixtures")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-wasm.sh first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A runtime over a fresh folder holding the named fixtures (as `{name}.wasm`).
fn runtime_with(fixtures: &[&str]) -> (tempfile::TempDir, Runtime) {
    let dir = tempfile::tempdir().unwrap();
    for name in fixtures {
        std::fs::copy(fixture(name), dir.path().join(format!("{name}.wasm"))).unwrap();
    }
    let runtime = Runtime::new(RuntimeConfig {
        plugin_dir: dir.path().to_path_buf(),
        default_limits: Limits {
            deadline: Duration::from_millis(100),
            memory: 16 << 20,
        },
        ..Default::default()
    })
    .unwrap();
    runtime.reload();
    (dir, runtime)
}

fn snapshot() -> Arc<LatticeSnapshot> {
    Arc::new(LatticeSnapshot::of_hosts(["host-a", "host-b"].map(|id| {
        HostInfo {
            id: id.into(),
            friendly_name: id.into(),
            labels: vec![],
            uptime_seconds: 1,
        }
    })))
}

fn ctx(trait_type: &str) -> ScalerContext {
    let component = ComponentSpec {
        name: "web".into(),
        kind: ComponentKind::Component,
        image: "file:///web.wasm".into(),
        id: "app-web".into(),
        config: vec![],
    };
    ScalerContext {
        app: "app".into(),
        version: "v1".into(),
        component: component.clone(),
        components: vec![component],
        trait_type: trait_type.into(),
        properties: "{}".into(),
        memo: None,
    }
}

fn fault_of(runtime: &Runtime, trait_type: &str) -> Fault {
    let plugins = runtime.plugins();
    let scaler = plugins
        .scaler_for(trait_type)
        .unwrap_or_else(|| panic!("no scaler for {trait_type}: {:?}", plugins.problems));
    let err = scaler
        .reconcile(&ctx(trait_type), &snapshot(), plugins.placements.clone())
        .unwrap_err();
    assert_eq!(err.plugin, format!("fixture-{trait_type}"));
    err.fault
}

#[test]
fn a_panic_fails_the_call_with_the_panic_message() {
    let (_dir, runtime) = runtime_with(&["trap"]);
    match fault_of(&runtime, "trap") {
        Fault::Trap(reason) => assert!(reason.contains("panicking on purpose"), "{reason}"),
        other => panic!("expected a trap, got {other}"),
    }
}

/// A plugin built with the SDK imports no WASI: its panic message reaches the runtime as error
/// lines through `log` (sdk/src/wasi.rs), and still explains the trap.
#[test]
fn an_sdk_plugins_panic_fails_the_call_with_the_panic_message() {
    let (_dir, runtime) = runtime_with(&["sdktrap"]);
    match fault_of(&runtime, "sdktrap") {
        Fault::Trap(reason) => {
            assert!(
                reason.contains("sdk fixture: panicking on purpose in app"),
                "{reason}"
            );
            assert!(reason.contains("panicked at"), "{reason}");
        }
        other => panic!("expected a trap, got {other}"),
    }
}

#[test]
fn an_endless_loop_hits_the_deadline() {
    let (_dir, runtime) = runtime_with(&["spin"]);
    assert!(matches!(fault_of(&runtime, "spin"), Fault::Timeout(_)));
}

#[test]
fn unbounded_allocation_hits_the_memory_cap() {
    let (_dir, runtime) = runtime_with(&["hog"]);
    match fault_of(&runtime, "hog") {
        Fault::MemoryLimit(limit) => assert_eq!(limit, 16 << 20),
        other => panic!("expected a memory fault, got {other}"),
    }
}

#[test]
fn a_command_for_an_unknown_host_is_invalid_output() {
    let (_dir, runtime) = runtime_with(&["badhost"]);
    match fault_of(&runtime, "badhost") {
        Fault::InvalidOutput(reason) => assert!(reason.contains("no-such-host"), "{reason}"),
        other => panic!("expected invalid output, got {other}"),
    }
}

#[test]
fn faults_leave_other_plugins_serving_and_are_counted() {
    let (_dir, runtime) = runtime_with(&["trap", "spin", "hog", "fixed"]);
    for t in ["trap", "spin", "hog"] {
        fault_of(&runtime, t);
    }
    let plugins = runtime.plugins();
    let fixed = plugins.scaler_for("fixed").unwrap();
    let result = fixed
        .reconcile(&ctx("fixed"), &snapshot(), plugins.placements.clone())
        .unwrap();
    assert_eq!(result.commands.len(), 1);
    // The faulty plugin still answers (a fresh instance per call) and its failures are counted.
    fault_of(&runtime, "trap");
    let trap = plugins.scaler_for("trap").unwrap().summary();
    assert_eq!(trap.failures.get("trap"), Some(&2));
    assert_eq!(trap.calls, 3, "describe at load plus two reconciles");
    assert!(trap.p99_us.is_some());
}

#[test]
fn a_component_without_a_trellis_world_is_refused_by_name() {
    let (dir, runtime) = runtime_with(&["wrongworld"]);
    let plugins = runtime.plugins();
    assert!(plugins.by_file.is_empty());
    let file = dir.path().join("wrongworld.wasm");
    match &plugins.problems[&file] {
        e @ LoadError::NoKnownWorld { exports, .. } => {
            assert!(exports.contains("greet"), "{e}");
            assert!(e.to_string().contains("wrongworld.wasm"), "{e}");
        }
        other => panic!("expected NoKnownWorld, got {other}"),
    }
}

#[test]
fn an_incompatible_contract_version_is_refused_naming_both_versions() {
    let (_dir, runtime) = runtime_with(&["future"]);
    let plugins = runtime.plugins();
    let message = plugins.problems.values().next().unwrap().to_string();
    assert!(message.contains("future.wasm"), "{message}");
    assert!(message.contains("trellis:plugin@0.3.0"), "{message}");
    assert!(message.contains("0.1.x and 0.2.x"), "{message}");
}

#[test]
fn a_corrupt_file_is_refused_and_the_rest_load() {
    let (dir, runtime) = runtime_with(&["fixed"]);
    std::fs::write(dir.path().join("corrupt.wasm"), b"\0asm\x0d\0\x01\0garbage").unwrap();
    runtime.reload();
    let plugins = runtime.plugins();
    assert!(plugins.scaler_for("fixed").is_some());
    let message = plugins.problems[&dir.path().join("corrupt.wasm")].to_string();
    assert!(
        message.contains("not a valid WebAssembly component"),
        "{message}"
    );
}

#[test]
fn two_plugins_for_one_trait_type_are_refused_naming_both_files() {
    let (dir, runtime) = runtime_with(&["fixed"]);
    std::fs::copy(fixture("fixed"), dir.path().join("fixed-copy.wasm")).unwrap();
    runtime.reload();
    let plugins = runtime.plugins();
    let message = plugins.problems[&dir.path().join("fixed-copy.wasm")].to_string();
    assert!(message.contains("fixed-copy.wasm"), "{message}");
    assert!(
        message.contains(&format!("{}", dir.path().join("fixed.wasm").display())),
        "{message}"
    );
    // The one already serving keeps the trait type.
    assert_eq!(
        plugins.scaler_for("fixed").unwrap().file,
        dir.path().join("fixed.wasm")
    );
}

#[test]
fn a_new_version_that_fails_to_load_leaves_the_old_one_serving() {
    let (dir, runtime) = runtime_with(&["fixed"]);
    let before = runtime.plugins().scaler_for("fixed").unwrap();
    std::fs::write(dir.path().join("fixed.wasm"), b"not wasm at all").unwrap();
    runtime.reload();
    let plugins = runtime.plugins();
    let after = plugins
        .scaler_for("fixed")
        .expect("old version still serving");
    assert!(Arc::ptr_eq(&before, &after));
    assert!(plugins
        .problems
        .contains_key(&dir.path().join("fixed.wasm")));
}

#[test]
fn replacing_a_file_changes_decisions_and_calls_in_flight_keep_their_version() {
    let (dir, runtime) = runtime_with(&[]);
    let file = dir.path().join("fixed.wasm");
    std::fs::copy(fixture("fixed"), &file).unwrap();
    assert!(runtime.reload_if_changed());
    let old = runtime.plugins().scaler_for("fixed").unwrap();
    let count = |p: &trellis_runtime::Plugin| match &p
        .reconcile(&ctx("fixed"), &snapshot(), Default::default())
        .unwrap()
        .commands[0]
    {
        trellis_runtime::bindings::Command::ScaleComponent(s) => s.count,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(count(&old), 1);
    std::fs::copy(fixture("fixed-2"), &file).unwrap();
    assert!(runtime.reload_if_changed());
    let new = runtime.plugins().scaler_for("fixed").unwrap();
    assert_eq!(count(&new), 2);
    // Whoever held the old version (a call in flight) still runs it.
    assert_eq!(count(&old), 1);
    assert!(!runtime.reload_if_changed(), "nothing changed since");
}
