//! Property tests of image reference parsing (issue 16: bad input costs at most its size): any
//! image reference a manifest gives is a file, an OCI reference or an error, never a panic; an
//! OCI reference printed whole reads back as the same reference, and is still taken for one.

use proptest::prelude::*;
use trellis_node::oci_reference;

/// Pieces of references: registries, repositories, tags and digests, each valid or nearly so.
fn image_ref() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(vec!["", "", "oci://", "file://", "https://"]);
    let registry = prop_oneof![
        prop::sample::select(vec![
            "ghcr.io",
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "docker.io",
            "index.docker.io",
            "reg.example.com:443",
            "Reg.IO",
            "Org",
            "[::1]:5000",
            "",
        ])
        .prop_map(str::to_string),
        "[a-z0-9.:-]{0,12}",
    ];
    let repository = prop_oneof![
        "[a-z0-9]{1,6}(/[a-z0-9._-]{1,6}){0,3}",
        any::<String>().prop_map(|s| s.chars().take(12).collect()),
    ];
    let tag = prop_oneof![
        Just(String::new()),
        "(:[A-Za-z0-9_.-]{0,10})",
        Just(":x.wasm".to_string()),
    ];
    let digest = prop_oneof![
        Just(String::new()),
        "@sha256:[0-9a-f]{64}",
        "@sha256:[0-9a-f]{0,70}",
        "@sha512:[0-9a-f]{128}",
        "@md5:[0-9a-f]{32}",
    ];
    prop_oneof![
        4 => (scheme, registry, repository, tag, digest).prop_map(|(s, r, p, t, d)| {
            let slash = if r.is_empty() { "" } else { "/" };
            format!("{s}{r}{slash}{p}{t}{d}")
        }),
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn references_parse_print_and_parse_again(image in image_ref()) {
        if let Some(Ok(reference)) = oci_reference(&image) {
            let whole = reference.whole();
            // Printed with the scheme, it always reads back as the same reference.
            let again = oci_reference(&format!("oci://{whole}"));
            prop_assert_eq!(again, Some(Ok(reference.clone())), "{} printed as {}", image, whole);
            // Printed bare, it is taken for the same OCI reference, unless it ends in `.wasm`
            // (a tag such as `:v1.wasm`): the module docs make that a file, on purpose.
            let bare = oci_reference(&whole);
            if whole.ends_with(".wasm") {
                prop_assert_eq!(bare, None);
            } else {
                prop_assert_eq!(bare, Some(Ok(reference)), "{} printed as {}", image, whole);
            }
        }
    }
}

/// Found by the `oci_ref` fuzz target: `oci://Org/app` parsed (as `docker.io/Org/app:latest`)
/// though that full form does not, so the pull would have failed at the registry instead.
#[test]
fn a_capital_in_a_docker_hub_repository_is_refused_naming_the_reference() {
    let refused = oci_reference("oci://Org/app:1");
    let Some(Err(message)) = refused else {
        panic!("{refused:?}")
    };
    assert!(message.contains("docker.io/Org/app:1"), "{message}");
    assert!(matches!(oci_reference("oci://org/app:1"), Some(Ok(_))));
}
