//! What the runtime's integration tests share: a runtime over one built plugin.

use std::path::Path;
use std::time::Duration;

use trellis_runtime::{Limits, Runtime, RuntimeConfig};

/// A runtime whose plugin folder holds only `build/plugins/{name}.wasm` (built by
/// `scripts/build-wasm.sh`), loaded, with a deadline generous enough for a busy machine: the
/// tests using it are about decisions, not time. Keep the folder as long as the runtime.
pub fn runtime_with_built(name: &str) -> (Runtime, tempfile::TempDir) {
    let built =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../build/plugins/{name}.wasm"));
    assert!(
        built.exists(),
        "{} is missing: run scripts/build-wasm.sh first (scripts/test.sh does)",
        built.display()
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&built, dir.path().join(format!("{name}.wasm"))).unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        plugin_dir: dir.path().to_path_buf(),
        default_limits: Limits {
            deadline: Duration::from_secs(5),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    runtime.reload();
    (runtime, dir)
}
