//! Any bytes as manifest text to `validate_text`, with a runtime over an empty plugin folder so
//! that only the controller's own checks run: findings or none, never a panic; text that does
//! not parse gives exactly one error; a manifest's findings come errors first, one error per
//! place at most.
#![no_main]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use trellis_controller::validate::validate_text;
use trellis_lattice::api::Severity;
use trellis_lattice::Manifest;
use trellis_runtime::{Runtime, RuntimeConfig};

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<(Runtime, tempfile::TempDir)> = OnceLock::new();
    &RUNTIME
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary plugin folder");
            let runtime = Runtime::new(RuntimeConfig {
                plugin_dir: dir.path().to_path_buf(),
                ..RuntimeConfig::default()
            })
            .expect("a plugin runtime");
            runtime.reload();
            (runtime, dir)
        })
        .0
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let found = validate_text(runtime(), &text);
    if Manifest::parse(&text).is_err() {
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].severity, Severity::Error);
        return;
    }
    assert!(
        found.windows(2).all(|w| w[0].severity <= w[1].severity),
        "{found:?}"
    );
    let errors: Vec<&str> = found
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.path.as_str())
        .collect();
    let places: BTreeSet<&str> = errors.iter().copied().collect();
    assert_eq!(
        places.len(),
        errors.len(),
        "two errors at one place: {found:?}"
    );
});
