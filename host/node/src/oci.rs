//! Component images from OCI registries, cached on disk by digest.
//!
//! An image reference is an OCI reference when it says so (`oci://registry/repo:tag`) or when
//! it looks like one wasmCloud manifests use (`ghcr.io/org/app:0.1.0`,
//! `localhost:5000/app@sha256:…`): a registry host (with a dot, a port or `localhost`) then a
//! repository with a tag or digest, and no `.wasm` ending. Anything else is a file.
//!
//! The image's manifest is read for its digest; the component (the layer of media type
//! `application/wasm`, as `wash push` and `wkg` publish it) is downloaded once per manifest
//! digest into the cache folder and its sha256 checked. A reference pinned by digest
//! (`repo@sha256:…`) already in the cache needs no registry at all, so nodes keep starting
//! components while the registry is down. A tag is always resolved afresh (tags move).
//!
//! Registries on a loopback address are spoken to over plain HTTP, as container tools do by
//! default (a registry on the node's own machine, e.g. for tests); all others over HTTPS.
//! Pulls are anonymous.
//!
//! The cache folder: `$TRELLIS_CACHE_DIR/images`, else `$XDG_CACHE_HOME/trellis/images`, else
//! `~/.cache/trellis/images`.

use std::path::PathBuf;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};

/// The media type of a component layer.
const WASM_LAYER: &str = "application/wasm";

/// The OCI reference `image_ref` names, if it names one (see the module docs).
pub(crate) fn reference(image_ref: &str) -> Option<Result<Reference, String>> {
    if let Some(rest) = image_ref.strip_prefix("oci://") {
        return Some(rest.parse().map_err(|e| format!("{e}")));
    }
    if image_ref.contains("://") || image_ref.ends_with(".wasm") {
        return None;
    }
    let (registry, rest) = image_ref.split_once('/')?;
    let host_like = registry.contains('.') || registry.contains(':') || registry == "localhost";
    let last = rest.rsplit('/').next().unwrap_or(rest);
    let pinned = last.contains(':') || last.contains('@');
    (host_like && pinned).then(|| image_ref.parse().map_err(|e| format!("{e}")))
}

/// Where pulled components are kept.
pub(crate) fn cache_dir() -> PathBuf {
    let env = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = env("TRELLIS_CACHE_DIR") {
        return dir.join("images");
    }
    if let Some(dir) = env("XDG_CACHE_HOME") {
        return dir.join("trellis/images");
    }
    match env("HOME") {
        Some(home) => home.join(".cache/trellis/images"),
        None => std::env::temp_dir().join("trellis-images"),
    }
}

/// The cached file of the image whose manifest has `digest`.
fn cached(digest: &str) -> PathBuf {
    cache_dir().join(format!("{}.wasm", digest.replace(':', "_")))
}

/// Returns the local file of the component `reference` names, pulling it if needed, and the
/// image's manifest digest.
pub(crate) async fn fetch(reference: &Reference) -> Result<(PathBuf, String), String> {
    if let Some(digest) = reference.digest() {
        let path = cached(digest);
        if path.exists() {
            return Ok((path, digest.to_string()));
        }
    }
    let registry = reference.resolve_registry().to_string();
    let loopback = {
        let host = registry
            .rsplit_once(':')
            .map_or(registry.as_str(), |(host, _)| host);
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    let client = Client::new(ClientConfig {
        protocol: if loopback {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        ..Default::default()
    });
    let auth = RegistryAuth::Anonymous;
    let (manifest, digest) = client
        .pull_image_manifest(reference, &auth)
        .await
        .map_err(|e| format!("cannot read the image manifest from registry {registry}: {e}"))?;
    let path = cached(&digest);
    if path.exists() {
        return Ok((path, digest));
    }
    let layer = manifest
        .layers
        .iter()
        .find(|layer| layer.media_type == WASM_LAYER)
        .or(match manifest.layers.as_slice() {
            [only] => Some(only),
            _ => None,
        })
        .ok_or_else(|| {
            format!("the image has no {WASM_LAYER} layer: is it a WebAssembly component image?")
        })?;
    let mut bytes = Vec::with_capacity(usize::try_from(layer.size).unwrap_or(0));
    client
        .pull_blob(reference, layer, &mut bytes)
        .await
        .map_err(|e| format!("cannot download the component from registry {registry}: {e}"))?;
    let actual = format!("sha256:{:x}", Sha256::digest(&bytes));
    if actual != layer.digest {
        return Err(format!(
            "the downloaded component's digest {actual} is not the {} its manifest names",
            layer.digest
        ));
    }
    // Written under a temporary name, then renamed: a node starting at the same moment never
    // reads half a file.
    let dir = cache_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create the image cache {}: {e}", dir.display()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot write {} to the image cache: {e}", path.display()))?;
    Ok((path, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_references_are_told_from_files() {
        let is_oci = |r: &str| reference(r).is_some_and(|parsed| parsed.is_ok());
        assert!(is_oci("ghcr.io/wasmcloud/components/http-hello:0.1.0"));
        assert!(is_oci("localhost:5000/echo:1"));
        assert!(is_oci("127.0.0.1:5000/trellis/echo@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
        assert!(is_oci("oci://registry.example.com/app:2"));
        assert!(reference("build/examples/echo.wasm").is_none());
        assert!(reference("/srv/app.wasm").is_none());
        assert!(reference("file:///srv/app.wasm").is_none());
        assert!(reference("examples/app").is_none());
        assert!(matches!(reference("oci://Bad Ref"), Some(Err(_))));
    }
}
