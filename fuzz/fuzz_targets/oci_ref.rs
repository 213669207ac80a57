//! Any image reference: a file, an OCI reference or an error, never a panic; an OCI reference
//! printed whole with `oci://` reads back as the same reference.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trellis_node::oci_reference;

fuzz_target!(|data: &[u8]| {
    let Ok(image) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(Ok(reference)) = oci_reference(image) {
        let whole = reference.whole();
        let again = oci_reference(&format!("oci://{whole}"));
        assert_eq!(again, Some(Ok(reference)), "{image} printed as {whole}");
    }
});
