//! `wasi:logging`: a component's log lines become the node's `tracing` events, with the
//! component id and the line's context as fields.

use tracing::{debug, error, info, trace, warn};

use super::bindings::logging;
use super::RequestState;

impl logging::Host for RequestState {
    async fn log(
        &mut self,
        level: logging::Level,
        context: String,
        message: String,
    ) -> wasmtime::Result<()> {
        let component_id = self.env.id.as_str();
        // `tracing` levels are static, hence one arm per level.
        match level {
            logging::Level::Trace => trace!(component_id, %context, "{message}"),
            logging::Level::Debug => debug!(component_id, %context, "{message}"),
            logging::Level::Info => info!(component_id, %context, "{message}"),
            logging::Level::Warn => warn!(component_id, %context, "{message}"),
            logging::Level::Error => error!(component_id, %context, "{message}"),
            logging::Level::Critical => {
                error!(component_id, %context, critical = true, "{message}")
            }
        }
        Ok(())
    }
}
