//! Component images: which ones a node reads, and how much of them.
//!
//! A scale command names the image to run, and whoever can send one can name anything: a node
//! that read whatever it was told would hand the lattice its `/proc/self/environ`, hang on
//! `/dev/zero` or a FIFO, or allocate whatever a registry claims. So:
//!
//! - **Files** (`file:///abs/app.wasm`, or a plain path; relative ones against the node's
//!   working directory) are read only from the folders the operator allowed
//!   ([`crate::NodeConfig::allowed_image_dirs`], `trellis node --allow-images DIR`). None by
//!   default: a node reads no file image unless told where. Each allowed folder is opened as a
//!   handle and the file is opened *through* it (`cap-std`), so `..` and symlinks that lead out
//!   of the folder are refused by the path walk itself, not by string checks that a symlink or
//!   a race could get round. Only regular files are read: not a device, a FIFO (opened
//!   non-blocking, so that even a file swapped for one cannot hang the node) or a folder.
//! - **One answer outside**: a path outside the allowed folders, whether or not it exists, and
//!   one the handle will not open (an escape, a permission) all get the same message, so that
//!   the lattice cannot probe what exists on the node's machine. Inside an allowed folder, a
//!   missing file says so: that tells nothing the operator did not share.
//! - **Size**: at most [`crate::NodeConfig::max_image_bytes`] ([`MAX_IMAGE_BYTES`] unless set)
//!   are read, counting what arrives (a file's metadata can lie: `/proc` files say 0, a file can
//!   grow while it is read). One byte past the limit and the image is refused.
//! - **Registries** ([`crate::oci`]): a layer that declares more than the limit is refused before
//!   it is downloaded; the download is counted and hashed as it arrives and cut at the limit; the
//!   whole pull, manifest and layer, must finish within
//!   [`crate::NodeConfig::image_pull_timeout`] ([`PULL_TIMEOUT`] unless set).
//!
//! Built-in providers (`builtin:…`) are not images and are not affected.

use std::io::Read as _;
use std::path::{Component as PathPart, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cap_std::fs::Dir;
use tracing::warn;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::Engine;

use crate::oci::human_bytes;
use crate::NodeConfig;

/// The largest component image a node reads, from a file or a registry. Components are small
/// (the echo example is 68 KiB; one that embeds a language runtime is tens of MiB); the limit
/// stops a scale command from making the node read, hold and compile gigabytes.
pub(crate) const MAX_IMAGE_BYTES: u64 = 64 << 20;
/// How long one pull from a registry (the manifest and the component layer) may take. Minutes
/// fetch [`MAX_IMAGE_BYTES`] over a slow link; a registry that stalls must not keep a scale
/// command, and the memory it holds, for ever.
pub(crate) const PULL_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Why an image could not become a runnable component.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImageError {
    #[error("unsupported image reference {0:?}: use a file (file:///abs/path.wasm or a path) or an OCI image (registry.example.com/repository:tag, or oci://…)")]
    Unsupported(String),
    #[error("invalid OCI image reference {reference:?}: {reason}")]
    BadReference { reference: String, reason: String },
    #[error("cannot pull {reference}: {reason}")]
    Pull { reference: String, reason: String },
    /// Outside the allowed folders, or not to be opened through their handles: one message
    /// whether or not the path exists (see the module docs).
    #[error("image {reference} is not a file under the node's allowed image folders ({allowed}); start the node with --allow-images DIR")]
    NotAllowed { reference: String, allowed: String },
    #[error("component file {} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("component file {} is not a regular file", .0.display())]
    NotAFile(PathBuf),
    #[error("component image {reference} is larger than this node's image size limit ({})", human_bytes(*.limit))]
    TooLarge { reference: String, limit: u64 },
    #[error("cannot read component file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a valid WebAssembly component: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot instantiate {}: {reason}", path.display())]
    Link { path: PathBuf, reason: String },
}

/// A component image read into memory: its bytes and the file they came from.
pub(crate) struct Image {
    pub(crate) path: PathBuf,
    pub(crate) bytes: Vec<u8>,
}

/// Where a node may read images from, and how much (see the module docs).
pub(crate) struct ImageSource {
    allowed: Arc<[AllowedDir]>,
    max_bytes: u64,
    pull_timeout: Duration,
}

/// A folder file images may be read from.
#[derive(Debug, Clone)]
struct AllowedDir {
    /// As the operator named it (made absolute): the folder opened, and named in errors.
    path: PathBuf,
    /// The names a path under it may start with: its own, without `.` and `..`, and its real
    /// one (a folder named through a symlink, e.g. `/tmp` on macOS).
    prefixes: Vec<PathBuf>,
}

impl AllowedDir {
    fn new(dir: &Path, cwd: &Path) -> Self {
        let path = cwd.join(dir);
        let mut prefixes = vec![lexical(&path)];
        match std::fs::canonicalize(&path) {
            Ok(real) if !prefixes.contains(&real) => prefixes.push(real),
            Ok(_) => {}
            Err(e) => {
                warn!(dir = %path.display(), error = %e, "an allowed image folder is not there (yet): no image is read from it until it is")
            }
        }
        Self { path, prefixes }
    }
}

impl ImageSource {
    pub(crate) fn new(config: &NodeConfig) -> Self {
        let cwd = std::env::current_dir().unwrap_or_default();
        Self {
            allowed: config
                .allowed_image_dirs
                .iter()
                .map(|dir| AllowedDir::new(dir, &cwd))
                .collect(),
            max_bytes: config.max_image_bytes,
            pull_timeout: config.image_pull_timeout,
        }
    }

    /// Reads the image `image_ref` names: a file under an allowed folder, or an OCI image
    /// (pulled unless cached).
    pub(crate) async fn read(&self, image_ref: &str) -> Result<Image, ImageError> {
        let max_bytes = self.max_bytes;
        let reference = image_ref.to_string();
        match crate::oci::reference(image_ref) {
            Some(Err(reason)) => Err(ImageError::BadReference { reference, reason }),
            Some(Ok(oci_ref)) => {
                let limits = crate::oci::PullLimits {
                    max_bytes,
                    timeout: self.pull_timeout,
                };
                let (path, digest) =
                    crate::oci::fetch(&oci_ref, &limits)
                        .await
                        .map_err(|reason| ImageError::Pull {
                            reference: reference.clone(),
                            reason,
                        })?;
                tracing::debug!(image_ref, %digest, path = %path.display(), "component image ready");
                // The cache is the node's own folder: no allowed-folder rule, but the same size.
                blocking(image_ref, move || {
                    let file = std::fs::File::open(&path).map_err(|source| ImageError::Read {
                        path: path.clone(),
                        source,
                    })?;
                    read_file(&reference, path, file, max_bytes)
                })
                .await
            }
            None => {
                let cwd = std::env::current_dir().unwrap_or_default();
                let path = image_path(image_ref, &cwd)?;
                let allowed = self.allowed.clone();
                blocking(image_ref, move || {
                    read_allowed(&reference, path, &allowed, max_bytes)
                })
                .await
            }
        }
    }
}

/// Runs blocking file work for `reference` off the async threads.
async fn blocking(
    reference: &str,
    work: impl FnOnce() -> Result<Image, ImageError> + Send + 'static,
) -> Result<Image, ImageError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(ImageError::Read {
            path: reference.into(),
            source: std::io::Error::other(format!("the read did not finish: {e}")),
        })
    })
}

/// The file an image reference points at, absolute and without `.` or `..`: `file:///abs/path`,
/// or a plain path (relative ones against `cwd`). Touches no file.
fn image_path(image_ref: &str, cwd: &Path) -> Result<PathBuf, ImageError> {
    let path = if let Some(rest) = image_ref.strip_prefix("file://") {
        Path::new(rest)
    } else if image_ref.contains("://") {
        return Err(ImageError::Unsupported(image_ref.into()));
    } else {
        Path::new(image_ref)
    };
    if path.as_os_str().is_empty() {
        return Err(ImageError::Unsupported(image_ref.into()));
    }
    Ok(lexical(&cwd.join(path)))
}

/// `path` without `.` and `..` parts, by name alone (`..` at the root stays there). Only used to
/// tell which allowed folder a path is under: the file itself is opened through that folder's
/// handle, which is what keeps it inside.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            PathPart::CurDir => {}
            PathPart::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Each allowed folder `path` is under, with the rest of `path` below it.
fn under_allowed<'a>(path: &Path, allowed: &'a [AllowedDir]) -> Vec<(&'a AllowedDir, PathBuf)> {
    allowed
        .iter()
        .filter_map(|dir| {
            dir.prefixes
                .iter()
                .filter_map(|prefix| path.strip_prefix(prefix).ok())
                .find(|rest| !rest.as_os_str().is_empty())
                .map(|rest| (dir, rest.to_path_buf()))
        })
        .collect()
}

/// How opening a file through an allowed folder's handle went.
enum Opened {
    File(std::fs::File),
    /// Nothing there (inside the folder: nothing outside is revealed).
    Missing,
    NotAFile,
    /// Outside after all (`..`, a symlink), or not to be opened: say nothing more.
    Refused,
}

/// Opens `relative` beneath `dir`, a regular file only, without ever blocking on a FIFO.
fn open_beneath(dir: &Path, relative: &Path) -> Opened {
    let Ok(dir) = Dir::open_ambient_dir(dir, cap_std::ambient_authority()) else {
        return Opened::Refused;
    };
    // Look before opening: a device or FIFO is not even opened.
    match dir.metadata(relative) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Opened::NotAFile,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Opened::Missing,
        Err(_) => return Opened::Refused,
    }
    let mut options = cap_std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use cap_std::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = match dir.open_with(relative, &options) {
        Ok(file) => file.into_std(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Opened::Missing,
        Err(_) => return Opened::Refused,
    };
    // And check what was opened: the path may have changed in between.
    match file.metadata() {
        Ok(meta) if meta.is_file() => Opened::File(file),
        _ => Opened::NotAFile,
    }
}

/// Reads the file image at `path` through the allowed folder it is under.
fn read_allowed(
    reference: &str,
    path: PathBuf,
    allowed: &[AllowedDir],
    max_bytes: u64,
) -> Result<Image, ImageError> {
    let mut missing = false;
    for (dir, relative) in under_allowed(&path, allowed) {
        match open_beneath(&dir.path, &relative) {
            Opened::File(file) => return read_file(reference, path, file, max_bytes),
            Opened::Missing => missing = true,
            Opened::NotAFile => return Err(ImageError::NotAFile(path)),
            Opened::Refused => {}
        }
    }
    if missing {
        return Err(ImageError::Missing(path));
    }
    Err(ImageError::NotAllowed {
        reference: reference.into(),
        allowed: folder_list(allowed),
    })
}

fn folder_list(allowed: &[AllowedDir]) -> String {
    if allowed.is_empty() {
        return "none".into();
    }
    allowed
        .iter()
        .map(|dir| dir.path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads an opened image file, at most `max_bytes` of it.
fn read_file(
    reference: &str,
    path: PathBuf,
    file: std::fs::File,
    max_bytes: u64,
) -> Result<Image, ImageError> {
    let too_large = || ImageError::TooLarge {
        reference: reference.into(),
        limit: max_bytes,
    };
    // The size a file claims only refuses early; what counts is what the read returns.
    if file.metadata().is_ok_and(|meta| meta.len() > max_bytes) {
        return Err(too_large());
    }
    match read_capped(file, max_bytes) {
        Ok(Some(bytes)) => Ok(Image { path, bytes }),
        Ok(None) => Err(too_large()),
        Err(source) => Err(ImageError::Read { path, source }),
    }
}

/// Everything `reader` has if that is at most `limit` bytes, else `None`; reads at most
/// `limit + 1` bytes either way, and allocates only for what arrives.
fn read_capped(reader: impl std::io::Read, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// Compiles an image into a component linked against what this node provides, the host
/// functions in `linker` (slow: call it on a blocking thread).
pub(crate) fn compile<T: 'static>(
    engine: &Engine,
    linker: &Linker<T>,
    image: &Image,
) -> Result<InstancePre<T>, ImageError> {
    let path = &image.path;
    // A core module (version 1) is the most common mistake: say so, and how to fix it.
    if image.bytes.starts_with(b"\0asm\x01\0\0\0") {
        return Err(ImageError::Invalid {
            path: path.clone(),
            reason: "it is a core WebAssembly module, not a component: build it for wasm32-wasip2 (or wrap it with `wasm-tools component new`)".into(),
        });
    }
    let component =
        Component::from_binary(engine, &image.bytes).map_err(|e| ImageError::Invalid {
            path: path.clone(),
            reason: format!("{e:#}"),
        })?;
    match linker.instantiate_pre(&component) {
        Ok(pre) => Ok(pre),
        Err(e) => {
            // Imports this node does not provide (messaging, blob stores, …) trap when called,
            // so that the rest of the component still works.
            warn!(path = %path.display(), error = %format!("{e:#}"), "component imports interfaces this node does not provide; they will trap");
            let mut linker = linker.clone();
            linker
                .define_unknown_imports_as_traps(&component)
                .and_then(|()| linker.instantiate_pre(&component))
                .map_err(|e| ImageError::Link {
                    path: path.clone(),
                    reason: format!("{e:#}"),
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs_resolve_to_files() {
        let cwd = Path::new("/work");
        let path = |r| image_path(r, cwd);
        assert_eq!(
            path("file:///srv/app.wasm").unwrap(),
            Path::new("/srv/app.wasm")
        );
        assert_eq!(path("/srv/app.wasm").unwrap(), Path::new("/srv/app.wasm"));
        assert_eq!(path("app.wasm").unwrap(), Path::new("/work/app.wasm"));
        assert_eq!(
            path("file://build/app.wasm").unwrap(),
            Path::new("/work/build/app.wasm")
        );
        assert_eq!(
            path("file:///srv/./a/../app.wasm").unwrap(),
            Path::new("/srv/app.wasm")
        );
        assert_eq!(path("../../../../x").unwrap(), Path::new("/x"));
        assert!(matches!(
            path("oci://ghcr.io/x:1"),
            Err(ImageError::Unsupported(_))
        ));
        assert!(matches!(path(""), Err(ImageError::Unsupported(_))));
        assert!(matches!(path("file://"), Err(ImageError::Unsupported(_))));
    }

    fn allowed(dirs: &[&str]) -> Vec<AllowedDir> {
        dirs.iter()
            .map(|d| AllowedDir::new(Path::new(d), Path::new("/")))
            .collect()
    }

    #[test]
    fn a_path_is_under_a_folder_by_whole_names_only() {
        let dirs = allowed(&["/srv/images", "/opt/../srv/other"]);
        let under = |p: &str| {
            under_allowed(Path::new(p), &dirs)
                .into_iter()
                .map(|(dir, rest)| (dir.path.clone(), rest))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            under("/srv/images/app.wasm"),
            [(PathBuf::from("/srv/images"), PathBuf::from("app.wasm"))]
        );
        assert_eq!(
            under("/srv/other/a/b.wasm"),
            [(
                PathBuf::from("/opt/../srv/other"),
                PathBuf::from("a/b.wasm")
            )]
        );
        assert!(under("/srv/images-2/app.wasm").is_empty());
        assert!(under("/srv/images").is_empty());
        assert!(under("/srv/app.wasm").is_empty());
        assert!(under("/etc/passwd").is_empty());
    }

    #[test]
    fn nothing_is_allowed_by_default_and_the_message_says_what_to_do() {
        let err = read_allowed("/srv/app.wasm", "/srv/app.wasm".into(), &[], 1 << 20)
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "image /srv/app.wasm is not a file under the node's allowed image folders (none); start the node with --allow-images DIR"
        );
    }

    #[test]
    fn files_open_only_beneath_their_folder() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("images");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("app.wasm"), b"\0asm").unwrap();
        std::fs::write(root.path().join("secret.wasm"), b"secret").unwrap();
        std::os::unix::fs::symlink(root.path().join("secret.wasm"), dir.join("out.wasm")).unwrap();
        std::os::unix::fs::symlink("../secret.wasm", dir.join("rel-out.wasm")).unwrap();
        std::os::unix::fs::symlink("app.wasm", dir.join("in.wasm")).unwrap();
        let dirs = allowed(&[dir.to_str().unwrap()]);
        let read = |rel: &str| {
            let path = dir.join(rel);
            read_allowed(rel, path, &dirs, 1 << 20)
        };
        assert_eq!(read("app.wasm").unwrap().bytes, b"\0asm");
        assert_eq!(read("in.wasm").unwrap().bytes, b"\0asm");
        assert_eq!(read("sub/../app.wasm").unwrap().bytes, b"\0asm");
        for escape in ["out.wasm", "rel-out.wasm"] {
            assert!(
                matches!(read(escape), Err(ImageError::NotAllowed { .. })),
                "{escape}"
            );
        }
        assert!(matches!(read("missing.wasm"), Err(ImageError::Missing(_))));
        assert!(matches!(read("sub"), Err(ImageError::NotAFile(_))));
        let err = read("../secret.wasm").err().unwrap();
        assert!(matches!(err, ImageError::NotAllowed { .. }), "{err}");
    }

    #[test]
    fn size_is_counted_not_believed() {
        // A reader that says nothing of its size and never ends, like /dev/zero.
        let endless = std::io::repeat(7);
        assert_eq!(read_capped(endless, 1000).unwrap(), None);
        assert_eq!(
            read_capped(&b"abc"[..], 3).unwrap().as_deref(),
            Some(&b"abc"[..])
        );
        assert_eq!(read_capped(&b"abcd"[..], 3).unwrap(), None);
        assert_eq!(read_capped(&b""[..], 0).unwrap().as_deref(), Some(&b""[..]));
    }

    proptest::proptest! {
        /// Whatever the `.` and `..` in a relative path, the lexical form of the whole path is
        /// either under the folder or not: never under it by way of a `..` that climbed out.
        #[test]
        fn lexical_paths_under_a_folder_stay_under_it(parts in proptest::collection::vec(
            proptest::prop_oneof!["\\.\\.", "\\.", "[a-c]{1,2}"], 0..8
        )) {
            let relative: PathBuf = parts.iter().collect();
            let base = Path::new("/srv/images");
            let path = lexical(&base.join(&relative));
            let mut depth: i64 = 0;
            let mut escaped = false;
            for part in &parts {
                match part.as_str() {
                    ".." => depth -= 1,
                    "." => {}
                    _ => depth += 1,
                }
                escaped |= depth < 0;
            }
            if !escaped {
                proptest::prop_assert!(path.starts_with(base), "{} from {:?}", path.display(), parts);
            }
            proptest::prop_assert!(!path.components().any(|p| matches!(p, PathPart::ParentDir | PathPart::CurDir)));
        }
    }
}
