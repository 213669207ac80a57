//! Bodies of the `trellis` subcommands that have more than a few lines of their own, one file
//! per group; `main.rs` holds the argument definitions and dispatch. (Part of the binary, not of
//! the `trellis_cli` library: they print for people and scripts; the library does the talking.)

pub mod app;
pub mod lattice;
pub mod plugin;

use trellis_cli::failure::Failure;

/// The failure an API error message means, for the exit code: the controller answers conflicts
/// in words (wadm's shapes have no code for them).
pub fn failure_in(message: &str) -> Option<Failure> {
    if message.contains("already has a version") || message.contains("at the same time") {
        Some(Failure::Conflict)
    } else if message.contains("not found")
        || message.contains("has no version")
        || message.contains("no earlier deployed version")
    {
        Some(Failure::NotFound)
    } else {
        None
    }
}

/// An error with `message`, tagged with the failure it means, if any.
pub fn api_error(message: String) -> anyhow::Error {
    match failure_in(&message) {
        Some(failure) => failure.error(message),
        None => anyhow::anyhow!(message),
    }
}
