//! Exit codes that mean something. An error tagged with a [`Failure`] ends the process with that
//! failure's code; any other error with 1; clap's usage errors with 2. `trellis --help` lists
//! them ([`EXIT_CODES_HELP`]), so scripts can tell "not there" from "broken".

use std::fmt;

use trellis_lattice::ErrorCode;

/// The failure an API answer's code means, for the exit code.
pub fn failure_of(code: Option<ErrorCode>) -> Option<Failure> {
    match code? {
        ErrorCode::NotFound => Some(Failure::NotFound),
        ErrorCode::Exists | ErrorCode::Conflict => Some(Failure::Conflict),
        ErrorCode::Invalid | ErrorCode::Unavailable | ErrorCode::TooLarge => None,
    }
}

/// An error with `message`, tagged with the failure the answer's `code` means, if any.
pub fn api_error(code: Option<ErrorCode>, message: String) -> anyhow::Error {
    match failure_of(code) {
        Some(failure) => failure.error(message),
        None => anyhow::anyhow!(message),
    }
}

/// The failures a script may want to tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The app, version, host or config named does not exist.
    NotFound,
    /// The version already exists, or someone else changed the app at the same time.
    Conflict,
    /// The app's status is failed.
    AppFailed,
}

pub const EXIT_CODES_HELP: &str = "Exit codes:
  0  success
  1  error: cannot connect, no answer, manifest refused, timeout
  2  usage: unknown command, missing or invalid arguments
  3  not found: the app, version, host or config does not exist
  4  conflict: that version already exists, or the app changed at the same time; retry
  5  failed: the app's status is failed (app status, app deploy, app status --watch)";

impl Failure {
    pub fn code(self) -> u8 {
        match self {
            Failure::NotFound => 3,
            Failure::Conflict => 4,
            Failure::AppFailed => 5,
        }
    }

    /// An error carrying this failure, with `message` as what the user reads.
    pub fn error(self, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Tagged {
            failure: self,
            message: message.into(),
        })
    }
}

#[derive(Debug)]
struct Tagged {
    failure: Failure,
    message: String,
}

impl fmt::Display for Tagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Tagged {}

/// The exit code for an error: its failure's code if any cause in its chain carries one, else 1.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Tagged>())
        .map(|t| t.failure.code())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_code_survives_added_context() {
        let e = Err::<(), _>(Failure::NotFound.error("app x not found"))
            .context("reading app x")
            .unwrap_err();
        assert_eq!(exit_code(&e), 3);
        assert_eq!(exit_code(&anyhow::anyhow!("plain")), 1);
        assert_eq!(format!("{e:#}"), "reading app x: app x not found");
    }
}
