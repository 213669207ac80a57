//! The built-in plugins and the example plugin, as built by scripts/build-wasm.sh, import only
//! the trellis contract: no WASI. The SDK answers its libc's WASI calls inside the plugin
//! (sdk/src/wasi.rs) because every import costs each call's instantiation
//! (docs/decisions/0008-plugin-imports-no-wasi.md). A toolchain whose libc renames the symbols
//! the SDK defines would bring the imports back; this test is what notices.

use std::path::Path;

use wasmtime::component::Component;
use wasmtime::{Config, Engine};

fn built(relative: &str) -> std::path::PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../build")
        .join(relative);
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-wasm.sh first (scripts/test.sh does)",
        path.display()
    );
    path
}

fn imports(engine: &Engine, file: &Path) -> Vec<String> {
    let component =
        Component::from_file(engine, file).unwrap_or_else(|e| panic!("{}: {e:#}", file.display()));
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect()
}

#[test]
fn sdk_plugins_import_only_the_trellis_contract() {
    let mut config = Config::new();
    config.wasm_component_model(true);
    let engine = Engine::new(&config).unwrap();
    let plugins = [
        "plugins/spreadscaler.wasm",
        "plugins/daemonscaler.wasm",
        "plugins/linkscaler.wasm",
        "plugins/configscaler.wasm",
        "plugins/placement.wasm",
        "plugins/validator.wasm",
        "examples/failover.wasm",
        "fixtures/sdktrap.wasm",
    ];
    for plugin in plugins {
        let file = built(plugin);
        let imports = imports(&engine, &file);
        let foreign: Vec<&String> = imports
            .iter()
            .filter(|name| !name.starts_with("trellis:plugin/"))
            .collect();
        assert!(
            foreign.is_empty(),
            "{plugin} imports {foreign:?}: the SDK should answer these inside the plugin \
             (sdk/src/wasi.rs); did the toolchain's libc rename its WASI symbols?"
        );
        assert!(
            imports
                .iter()
                .any(|name| name.starts_with("trellis:plugin/")),
            "{plugin} imports nothing of the contract: {imports:?}"
        );
    }
}

/// The other side: a guest built without the SDK still imports WASI, and the runtime still
/// serves it (the fault tests load such fixtures). This keeps the test above meaningful.
#[test]
fn a_plugin_built_without_the_sdk_imports_wasi() {
    let mut config = Config::new();
    config.wasm_component_model(true);
    let engine = Engine::new(&config).unwrap();
    let imports = imports(&engine, &built("fixtures/trap.wasm"));
    assert!(
        imports.iter().any(|name| name.starts_with("wasi:")),
        "{imports:?}"
    );
}
