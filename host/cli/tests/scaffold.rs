//! `trellis plugin new --kind placement|validator`: like the scaler scaffold (tested in
//! cli.rs), each new crate passes its own tests, builds to wasm32-wasip2, and the runtime
//! loads it as its kind.

use std::path::Path;
use std::process::Command;

use trellis_runtime::{PluginKind, Runtime, RuntimeConfig};

fn scaffold_test_build_load(kind: &str, name: &str, tests: usize) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["plugin", "new", name, "--kind", kind, "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = dir.path().join(name);
    // Shared with the scaler scaffold's test so the plugins' dependencies build once.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffolded-plugin");
    let cargo = |args: &[&str]| {
        let out = Command::new(env!("CARGO"))
            .args(args)
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let tested = cargo(&["test", "--quiet"]);
    assert!(tested.contains(&format!("{tests} passed")), "{tested}");
    cargo(&["build", "--quiet", "--target", "wasm32-wasip2", "--release"]);

    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let file = format!("{}.wasm", name.replace('-', "_"));
    std::fs::copy(
        target.join("wasm32-wasip2/release").join(&file),
        plugins.join(&file),
    )
    .unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        plugin_dir: plugins,
        ..Default::default()
    })
    .unwrap();
    runtime.reload();
    let set = runtime.plugins();
    assert!(set.problems.is_empty(), "{:?}", set.problems);
    let summaries = set.summaries();
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    assert_eq!(summaries[0].name, name);
    let expected = match kind {
        "placement" => PluginKind::Placement,
        _ => PluginKind::Validator,
    };
    assert_eq!(summaries[0].kind, expected);
}

#[test]
fn a_new_placement_plugin_tests_builds_and_loads() {
    scaffold_test_build_load("placement", "no-maintenance", 2);
}

#[test]
fn a_new_validator_plugin_tests_builds_and_loads() {
    scaffold_test_build_load("validator", "house-rules", 2);
}
