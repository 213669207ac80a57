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
//! What a registry sends is bounded ([`crate::image`] says why): a layer that declares more
//! than the node's image size limit is refused before any of it is downloaded; the download
//! goes into a [`BlobSink`] that counts and hashes each chunk as it arrives and stops at the
//! first byte past the declared size or the limit (so a declared size is never trusted for an
//! allocation); and the whole pull, manifest and layer, is cut off after the pull timeout. (The
//! manifest itself is read whole by `oci-client`: it is bounded by that timeout only.)
//!
//! Registries on a loopback address are spoken to over plain HTTP, as container tools do by
//! default (a registry on the node's own machine, e.g. for tests); all others over HTTPS.
//! Pulls are anonymous.
//!
//! The cache folder: `$TRELLIS_CACHE_DIR/images`, else `$XDG_CACHE_HOME/trellis/images`, else
//! `~/.cache/trellis/images`.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};

/// The media type of a component layer.
const WASM_LAYER: &str = "application/wasm";

/// The OCI reference `image_ref` names, if it names one (see the module docs).
pub fn reference(image_ref: &str) -> Option<Result<Reference, String>> {
    if let Some(rest) = image_ref.strip_prefix("oci://") {
        return Some(parse(rest));
    }
    if image_ref.contains("://") || image_ref.ends_with(".wasm") {
        return None;
    }
    let (registry, rest) = image_ref.split_once('/')?;
    let host_like = registry.contains('.') || registry.contains(':') || registry == "localhost";
    let last = rest.rsplit('/').next().unwrap_or(rest);
    let pinned = last.contains(':') || last.contains('@');
    (host_like && pinned).then(|| parse(image_ref))
}

/// Parses a reference, refusing one whose full form does not parse. `oci-spec` reads a first
/// component with capitals (`Org/app:1`) as a registry name, then, as it has no dot or port,
/// files it under docker.io as a repository, where capitals are invalid: the pull would fail
/// later with a registry's error rather than here with one that names the reference.
fn parse(text: &str) -> Result<Reference, String> {
    let reference: Reference = text.parse().map_err(|e| format!("{e}"))?;
    let whole = reference.whole();
    match whole.parse::<Reference>() {
        Ok(_) => Ok(reference),
        Err(e) => Err(format!("`{text}` means `{whole}`, which is not valid: {e}")),
    }
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

/// The bounds on one pull.
pub(crate) struct PullLimits {
    /// The largest component layer accepted.
    pub(crate) max_bytes: u64,
    /// How long the manifest and the layer together may take.
    pub(crate) timeout: Duration,
}

/// Returns the local file of the component `reference` names, pulling it if needed, and the
/// image's manifest digest.
pub(crate) async fn fetch(
    reference: &Reference,
    limits: &PullLimits,
) -> Result<(PathBuf, String), String> {
    if let Some(digest) = reference.digest() {
        let path = cached(digest);
        if path.exists() {
            return Ok((path, digest.to_string()));
        }
    }
    let registry = reference.resolve_registry().to_string();
    match tokio::time::timeout(limits.timeout, pull(reference, &registry, limits.max_bytes)).await
    {
        Ok(pulled) => pulled,
        Err(_) => Err(format!(
            "registry {registry} did not deliver the image within {} (the node's image pull timeout)",
            human_duration(limits.timeout)
        )),
    }
}

/// Pulls the manifest and, unless cached, the component layer of `reference` from `registry`.
async fn pull(
    reference: &Reference,
    registry: &str,
    max_bytes: u64,
) -> Result<(PathBuf, String), String> {
    let loopback = {
        let host = registry.rsplit_once(':').map_or(registry, |(host, _)| host);
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
    let bytes = download(&client, reference, registry, layer, max_bytes).await?;
    // Written under a temporary name of its own, then renamed: a node starting at the same
    // moment never reads half a file, and two pulls of one image never write into one file.
    let dir = cache_dir();
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| format!("cannot create the image cache {}: {e}", dir.display()))?;
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let written = match tokio::fs::write(&tmp, &bytes).await {
        Ok(()) => tokio::fs::rename(&tmp, &path).await,
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(format!(
            "cannot write {} to the image cache: {e}",
            path.display()
        ));
    }
    Ok((path, digest))
}

/// Downloads `layer`, refusing it before the download when it declares more than `max_bytes`
/// and during it at the first byte past what it declared; checks its sha256.
async fn download(
    client: &Client,
    reference: &Reference,
    registry: &str,
    layer: &OciDescriptor,
    max_bytes: u64,
) -> Result<Vec<u8>, String> {
    let declared = u64::try_from(layer.size).map_err(|_| {
        format!(
            "the component layer declares a negative size ({})",
            layer.size
        )
    })?;
    if declared > max_bytes {
        return Err(format!(
            "the component layer declares {declared} bytes, more than this node's image size limit ({}); it was not downloaded",
            human_bytes(max_bytes)
        ));
    }
    let mut blob = client
        .pull_blob_stream(reference, layer)
        .await
        .map_err(|e| format!("cannot download the component from registry {registry}: {e}"))?;
    let mut sink = BlobSink::new(declared, max_bytes);
    while let Some(chunk) = blob.next().await {
        let chunk = chunk
            .map_err(|e| format!("cannot download the component from registry {registry}: {e}"))?;
        sink.write_all(&chunk)
            .map_err(|e| format!("registry {registry} sent too much: {e}"))?;
    }
    let (bytes, actual) = sink.finish();
    if bytes.len() as u64 != declared {
        return Err(format!(
            "registry {registry} sent {} bytes of a component layer that declares {declared}",
            bytes.len()
        ));
    }
    if actual != layer.digest {
        return Err(format!(
            "the downloaded component's digest {actual} is not the {} its manifest names",
            layer.digest
        ));
    }
    Ok(bytes)
}

/// Takes a blob as it arrives: counts and hashes each chunk, keeps it, and refuses the first
/// byte past the size the blob declared or the node's limit (whichever comes first), so that
/// neither a lying registry nor a huge declared size costs more memory than the limit.
struct BlobSink {
    bytes: Vec<u8>,
    hasher: Sha256,
    declared: u64,
    limit: u64,
}

impl BlobSink {
    fn new(declared: u64, limit: u64) -> Self {
        Self {
            // Never sized by what was declared: it grows with what arrives.
            bytes: Vec::new(),
            hasher: Sha256::new(),
            declared,
            limit,
        }
    }

    /// The bytes taken and their digest (`sha256:…`).
    fn finish(self) -> (Vec<u8>, String) {
        let digest = format!("sha256:{:x}", self.hasher.finalize());
        (self.bytes, digest)
    }
}

impl std::io::Write for BlobSink {
    fn write(&mut self, chunk: &[u8]) -> std::io::Result<usize> {
        let total = self.bytes.len() as u64 + chunk.len() as u64;
        if total > self.limit {
            return Err(std::io::Error::other(format!(
                "more than this node's image size limit ({})",
                human_bytes(self.limit)
            )));
        }
        if total > self.declared {
            return Err(std::io::Error::other(format!(
                "more than the {} bytes the layer declares",
                self.declared
            )));
        }
        self.hasher.update(chunk);
        self.bytes.extend_from_slice(chunk);
        Ok(chunk.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `67108864` as `64 MiB`, for errors that name a size limit.
pub(crate) fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// `300s` as `5 min`, for errors that name a timeout.
fn human_duration(duration: Duration) -> String {
    match duration.as_secs() {
        s if s >= 60 && s % 60 == 0 && duration.subsec_nanos() == 0 => format!("{} min", s / 60),
        _ => format!("{duration:?}"),
    }
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

    #[test]
    fn a_blob_sink_counts_hashes_and_stops_at_the_first_byte_too_many() {
        let mut sink = BlobSink::new(5, 10);
        sink.write_all(b"hel").unwrap();
        sink.write_all(b"lo").unwrap();
        let err = sink.write_all(b"!").unwrap_err();
        assert!(
            err.to_string().contains("the 5 bytes the layer declares"),
            "{err}"
        );
        let (bytes, digest) = sink.finish();
        assert_eq!(bytes, b"hello");
        assert_eq!(digest, format!("sha256:{:x}", Sha256::digest(b"hello")));

        let mut sink = BlobSink::new(u64::MAX, 4);
        let err = sink.write_all(b"hello").unwrap_err();
        assert!(
            err.to_string().contains("image size limit (4 bytes)"),
            "{err}"
        );
        assert!(sink.finish().0.is_empty(), "a refused chunk is not kept");
    }

    #[test]
    fn limits_read_like_people_write_them() {
        assert_eq!(human_bytes(64 << 20), "64 MiB");
        assert_eq!(human_bytes(8 << 10), "8 KiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
        assert_eq!(human_duration(Duration::from_secs(300)), "5 min");
        assert_eq!(human_duration(Duration::from_secs(2)), "2s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5s");
    }

    proptest::proptest! {
        /// However the blob is cut into chunks, the sink keeps and hashes exactly the blob when
        /// it fits, and refuses it when it does not.
        #[test]
        fn chunking_changes_nothing(
            blob in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            cuts in proptest::collection::vec(0usize..300, 0..6),
            limit in 0u64..400,
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(blob.len())).collect();
            cuts.push(0);
            cuts.push(blob.len());
            cuts.sort_unstable();
            let mut sink = BlobSink::new(blob.len() as u64, limit);
            let fits = cuts
                .windows(2)
                .all(|w| sink.write_all(&blob[w[0]..w[1]]).is_ok());
            proptest::prop_assert_eq!(fits, blob.len() as u64 <= limit);
            let (bytes, digest) = sink.finish();
            proptest::prop_assert!(bytes.len() as u64 <= limit);
            if fits {
                proptest::prop_assert_eq!(&bytes, &blob);
                proptest::prop_assert_eq!(digest, format!("sha256:{:x}", Sha256::digest(&blob)));
            }
        }
    }
}
