//! Image identity: whether the image a host reports running is the one a manifest asks for.
//!
//! Hosts do not echo image references back verbatim. A wasmCloud 1.x host asked for
//! `wasmcloud+builtin://http-server` reports `http-server`; a registry may answer a tag with a
//! digest; `latest` may be written or left out. Comparing strings calls those outdated and
//! replaces a running instance over and over. So a running image counts as outdated only when
//! it surely is another image ([`surely_differs`]); when the two may be the same (a tag against a
//! digest), the running one stays.

/// The scheme wasmCloud uses for a host's built-in providers.
const WASMCLOUD_BUILTIN: &str = "wasmcloud+builtin://";
/// The scheme trellis nodes use for theirs.
const TRELLIS_BUILTIN: &str = "builtin:";

/// An image reference, read for comparison.
#[derive(Debug, PartialEq, Eq)]
enum Image<'a> {
    /// A host's built-in provider, by name (`http-server`).
    Builtin(&'a str),
    /// A file on the host (`file:///path`).
    File(&'a str),
    /// An OCI image: repository (registry included), tag, digest.
    Oci {
        repository: &'a str,
        tag: Option<&'a str>,
        digest: Option<&'a str>,
    },
}

/// Reads `reference`; a bare name without registry, path or tag (`http-server`) is how a
/// wasmCloud host reports a built-in provider.
fn read(reference: &str) -> Image<'_> {
    if let Some(name) = reference
        .strip_prefix(WASMCLOUD_BUILTIN)
        .or_else(|| reference.strip_prefix(TRELLIS_BUILTIN))
    {
        return Image::Builtin(name);
    }
    if let Some(path) = reference.strip_prefix("file://") {
        return Image::File(path);
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    // A tag follows the last `:` after the last `/` (a registry may have a port).
    let last_part = rest.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match rest[last_part..].rfind(':') {
        Some(i) => (&rest[..last_part + i], Some(&rest[last_part + i + 1..])),
        None => (rest, None),
    };
    if !repository.contains('/') && tag.is_none() && digest.is_none() {
        return Image::Builtin(repository);
    }
    Image::Oci {
        repository,
        // No tag means `latest` to a registry.
        tag: tag.or(if digest.is_none() {
            Some("latest")
        } else {
            None
        }),
        digest,
    }
}

/// Whether `running` (as a host reports it) is surely another image than `wanted` (as the
/// manifest says). An empty report (a host that does not say) is never outdated, and neither
/// is one that may be the same image (a tag against a digest of the same repository).
pub fn surely_differs(running: &str, wanted: &str) -> bool {
    if running.is_empty() || running == wanted {
        return false;
    }
    match (read(running), read(wanted)) {
        (
            Image::Oci {
                repository: a,
                tag: tag_a,
                digest: digest_a,
            },
            Image::Oci {
                repository: b,
                tag: tag_b,
                digest: digest_b,
            },
        ) => {
            if a != b {
                return true;
            }
            match (digest_a, digest_b) {
                (Some(x), Some(y)) => x != y,
                // A digest without a tag against a tag: the digest may be the tag's.
                _ => matches!((tag_a, tag_b), (Some(x), Some(y)) if x != y),
            }
        }
        (a, b) => a != b,
    }
}

/// Whether `running` may be the image `wanted`: the opposite of [`surely_differs`].
pub fn may_be_same(running: &str, wanted: &str) -> bool {
    !surely_differs(running, wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_of_one_image_are_the_same() {
        for (running, wanted) in [
            ("http-server", "wasmcloud+builtin://http-server"),
            ("wasmcloud+builtin://http-server", "builtin:http-server"),
            ("ghcr.io/a/b", "ghcr.io/a/b:latest"),
            ("ghcr.io/a/b:1.0@sha256:abc", "ghcr.io/a/b:1.0"),
            ("ghcr.io/a/b@sha256:abc", "ghcr.io/a/b:1.0"),
            ("localhost:5000/a/b:2", "localhost:5000/a/b:2"),
            ("", "ghcr.io/a/b:1.0"),
        ] {
            assert!(may_be_same(running, wanted), "{running} vs {wanted}");
        }
    }

    #[test]
    fn other_images_differ() {
        for (running, wanted) in [
            ("http-server", "wasmcloud+builtin://messaging-nats"),
            ("ghcr.io/a/b:1.0", "ghcr.io/a/b:2.0"),
            ("ghcr.io/a/b:1.0@sha256:abc", "ghcr.io/a/b:2.0"),
            ("ghcr.io/a/b:1.0", "ghcr.io/a/b"),
            ("ghcr.io/a/b:1.0", "ghcr.io/a/c:1.0"),
            ("ghcr.io/a/b@sha256:abc", "ghcr.io/a/b@sha256:def"),
            ("localhost:5000/a/b:1", "localhost:5000/a/b:2"),
            ("file:///one.wasm", "file:///two.wasm"),
            ("http-server", "ghcr.io/wasmcloud/http-server:0.23.0"),
        ] {
            assert!(surely_differs(running, wanted), "{running} vs {wanted}");
        }
    }

    proptest::proptest! {
        #[test]
        fn an_image_is_itself_and_comparison_is_symmetric(
            a in "[a-z:/@.+0-9-]{0,24}",
            b in "[a-z:/@.+0-9-]{0,24}",
        ) {
            proptest::prop_assert!(!surely_differs(&a, &a));
            if !a.is_empty() && !b.is_empty() {
                proptest::prop_assert_eq!(surely_differs(&a, &b), surely_differs(&b, &a));
            }
        }
    }
}
