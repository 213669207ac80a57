//! Running validation for the API: off the async workers, a few at a time. A burst of puts
//! waits for a slot rather than exhausting the plugin pool, and a validation that cannot run
//! (no slot in time, a panic) is an error finding, never an empty list, so nothing unchecked is
//! stored.

use std::sync::Arc;

use trellis_lattice::api::Diagnostic;
use trellis_runtime::Runtime;

use crate::validate;

/// How many validations run at once; the rest wait their turn. Each holds a plugin instance
/// per call and a blocking thread: a burst of puts must queue here rather than exhaust the
/// plugin pool (whose failures would then refuse manifests that are fine).
pub const CONCURRENT_VALIDATIONS: usize = 8;

/// How long a put waits for a validation slot before it is refused as unavailable; well under
/// the clients' 10 s request timeout, so the client reads the reason.
const VALIDATION_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The validation slots shared by `put` and `validate`.
#[derive(Clone)]
pub struct Validations(Arc<tokio::sync::Semaphore>);

impl Default for Validations {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(
            CONCURRENT_VALIDATIONS,
        )))
    }
}

impl Validations {
    /// Validates `manifest` (parsed, or text to parse) off the async workers, waiting for a
    /// slot. A validation that cannot run is an error finding, never an empty list: nothing
    /// unchecked is stored.
    pub async fn run(
        &self,
        runtime: &Arc<Runtime>,
        check: impl FnOnce(&Runtime) -> Vec<Diagnostic> + Send + 'static,
    ) -> Vec<Diagnostic> {
        let refused = |why: String| vec![validate::plugin_failed("", &why)];
        let permit = match tokio::time::timeout(VALIDATION_WAIT, self.0.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return refused("the controller is shutting down".into()),
            Err(_) => {
                return refused(format!(
                    "{CONCURRENT_VALIDATIONS} validations were running for {VALIDATION_WAIT:?}; the controller is busy"
                ))
            }
        };
        let runtime = Arc::clone(runtime);
        let found = tokio::task::spawn_blocking(move || check(&runtime)).await;
        drop(permit);
        found.unwrap_or_else(|e| {
            tracing::error!("validation panicked: {e}");
            refused("the validation failed inside the controller (see its log)".into())
        })
    }
}
