//! The bodies of the `trellis` commands, one file per group: `up`, `controller` and `node` run
//! a part of the lattice; `app`, `get` and `plugin` are the client side. Each group's `run`
//! takes its parsed arguments from [`crate::args`]. (Part of the binary, not of the
//! `trellis_cli` library: they print for people and scripts; the library does the talking.)

pub mod app;
pub mod controller;
pub mod get;
pub mod node;
pub mod plugin;
pub mod up;

use trellis_cli::failure::Failure;
use trellis_lattice::ErrorCode;

/// The failure an API answer's code means, for the exit code.
pub fn failure_of(code: Option<ErrorCode>) -> Option<Failure> {
    match code? {
        ErrorCode::NotFound => Some(Failure::NotFound),
        ErrorCode::Exists | ErrorCode::Conflict => Some(Failure::Conflict),
        ErrorCode::Invalid | ErrorCode::Unavailable => None,
    }
}

/// An error with `message`, tagged with the failure the answer's `code` means, if any.
pub fn api_error(code: Option<ErrorCode>, message: String) -> anyhow::Error {
    match failure_of(code) {
        Some(failure) => failure.error(message),
        None => anyhow::anyhow!(message),
    }
}
