//! What the runtime's integration tests share: a runtime over built plugins.
// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use trellis_runtime::{Limits, Runtime, RuntimeConfig};

/// A runtime whose plugin folder holds only `build/plugins/{name}.wasm` (built by
/// `scripts/build-wasm.sh`), loaded, with a deadline generous enough for a busy machine: the
/// tests using it are about decisions, not time. Keep the folder as long as the runtime.
pub fn runtime_with_built(name: &str) -> (Runtime, tempfile::TempDir) {
    runtime_with_files(&[&format!("build/plugins/{name}.wasm")])
}

/// A runtime whose plugin folder holds copies of `files` (paths from the repository root),
/// loaded, as [`runtime_with_built`].
pub fn runtime_with_files(files: &[&str]) -> (Runtime, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for file in files {
        let from = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(file);
        assert!(
            from.exists(),
            "{} is missing: run scripts/build-wasm.sh first (scripts/test.sh does)",
            from.display()
        );
        std::fs::copy(&from, dir.path().join(from.file_name().unwrap())).unwrap();
    }
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
