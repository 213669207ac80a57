//! What the two runners of the real wasmCloud programs share.

/// Logs to stderr as plain text (the suite keeps each program's output in a file), at the level
/// `RUST_LOG` says, `info` otherwise.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
