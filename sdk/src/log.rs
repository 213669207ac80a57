//! Logging into the controller's log, tagged with the plugin's name. Natively (in unit tests)
//! the lines go to stderr, where the test harness captures them.

/// How important a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Step-by-step detail, for following a plugin's reasoning while debugging it.
    Trace,
    /// Detail that helps explain a decision.
    Debug,
    /// Worth knowing in normal operation; lines the plugin prints to stdout arrive at this level.
    Info,
    /// Something unexpected that the plugin worked around.
    Warn,
    /// Something went wrong; lines the plugin prints to stderr, a panic message among them,
    /// arrive at this level.
    Error,
}

/// Writes one line to the controller's log.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::bindings::scaler::trellis::plugin::log as wit;
        let level = match level {
            Level::Trace => wit::Level::Trace,
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
        };
        wit::log(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}
