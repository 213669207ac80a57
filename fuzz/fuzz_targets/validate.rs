//! Any bytes as manifest text to `validate_text`, with a runtime over an empty plugin folder so
//! that only the controller's own checks run: findings or none, never a panic; text that does
//! not parse gives exactly one error, about the whole text; a manifest's findings come errors
//! first, one error per place at most (`check_findings`, shared with the property tests).
#![no_main]

use libfuzzer_sys::fuzz_target;
use trellis_controller::validate::validate_text;
use trellis_fuzz::{check_findings, runtime_without_plugins};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let found = validate_text(runtime_without_plugins(), &text);
    if let Err(wrong) = check_findings(&text, &found) {
        panic!("{wrong}");
    }
});
