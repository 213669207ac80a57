//! Any bytes as manifest text: `Manifest::parse` answers with a manifest or an error, never a
//! panic; a manifest it accepts, written back as JSON (as the store keeps it) or YAML (as
//! `trellis app get` prints it), reads back as the same manifest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trellis_lattice::{Manifest, ManifestError};

/// Reads `text` back. A syntax error is a round-trip failure; any other refusal (a size limit:
/// YAML aliases can make the written form larger than the input) is not.
fn reads_back(text: &str, original: &Manifest, format: &str) {
    match Manifest::parse(text) {
        Ok(back) => assert_eq!(&back, original, "{format} did not read back:\n{text}"),
        Err(e @ ManifestError::Syntax { .. }) => panic!("{format} did not parse: {e}\n{text}"),
        Err(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(manifest) = Manifest::parse(text) else {
        return;
    };
    let json = serde_json::to_string(&manifest).expect("a parsed manifest serialises as JSON");
    reads_back(&json, &manifest, "JSON");
    let yaml = serde_yaml_ng::to_string(&manifest).expect("a parsed manifest serialises as YAML");
    reads_back(&yaml, &manifest, "YAML");
    // `parse_versioned` is `parse` and a version check.
    match Manifest::parse_versioned(text) {
        Ok(m) => assert_eq!(m, manifest),
        Err(ManifestError::MissingVersion) => assert!(manifest.version().is_empty()),
        Err(e) => panic!("parse accepted what parse_versioned refused: {e}"),
    }
});
