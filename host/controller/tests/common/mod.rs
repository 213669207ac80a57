//! What the controller's integration tests share: the built plugins, and waiting for a
//! condition on a real lattice.
// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Generous for a loaded machine; each step of these tests takes well under a second.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A built plugin (`build/plugins/{name}.wasm`, made by scripts/build-wasm.sh).
pub fn built_plugin(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../build/plugins")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-wasm.sh first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A fresh plugin folder holding the named built plugins.
pub fn plugin_dir(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        std::fs::copy(built_plugin(name), dir.path().join(format!("{name}.wasm"))).unwrap();
    }
    dir
}

/// Asks `subject` and reads the JSON answer, naming the subject when there is none or it is
/// unreadable.
pub async fn request<T: serde::de::DeserializeOwned>(
    client: &async_nats::Client,
    subject: String,
    body: &str,
) -> T {
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(subject.clone(), body.to_string().into()),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer on {subject}"))
    .unwrap();
    serde_json::from_slice(&reply.payload)
        .unwrap_or_else(|e| panic!("unreadable answer on {subject}: {e}"))
}

/// Polls `check` until it gives a value, for [`PATIENCE`] at most.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "not within {PATIENCE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
