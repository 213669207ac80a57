//! Wire types of a trellis lattice, and nothing else.
//!
//! This crate says what travels between the parts: the OAM application manifest, the
//! wasmCloud control interface v1 (commands, replies, CloudEvents) and the wadm-compatible
//! controller API. Field names follow `wasmcloud-control-interface` 2.x and `wadm-types` 0.8 so
//! that their tools talk to trellis unchanged. No I/O happens here.

pub mod annotations;
pub mod api;
pub mod code;
pub mod ctl;
pub mod event;
pub mod host_id;
pub mod limits;
pub mod liveness;
pub mod manifest;
mod strict;

pub use code::ErrorCode;
pub use manifest::{Manifest, ManifestError};
