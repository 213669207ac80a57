//! Why a request failed, as a machine-readable code that travels beside the message.
//!
//! wadm's answers say `result: error` and a sentence; a script, the CLI's exit code or the HTTP
//! API's status cannot tell "not there" from "changed at the same time" from that without
//! reading the words, which change. Every trellis answer that fails carries one of these in a
//! `code` field as well (wadm's own clients ignore fields they do not know).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The app, version, host or config named does not exist.
    NotFound,
    /// That version of the app is stored already (put it again under a new version).
    Exists,
    /// Someone else changed the app at the same time, or another app owns a name it claims:
    /// retry, or choose another name.
    Conflict,
    /// The request or the manifest is not acceptable as it is (malformed, refused by
    /// validation).
    Invalid,
    /// Something the request needs could not be reached (the store, a plugin, the hosts).
    Unavailable,
    /// The request, or its answer, is past a limit; the message names the limit and what to
    /// do (e.g. ask for a page of the list).
    TooLarge,
}

impl ErrorCode {
    /// The code as it reads on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::Exists => "exists",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Invalid => "invalid",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::TooLarge => "too_large",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_as_their_wire_names() {
        for code in [
            ErrorCode::NotFound,
            ErrorCode::Exists,
            ErrorCode::Conflict,
            ErrorCode::Invalid,
            ErrorCode::Unavailable,
            ErrorCode::TooLarge,
        ] {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str());
            assert_eq!(serde_json::from_value::<ErrorCode>(json).unwrap(), code);
        }
    }
}
