//! Annotations the controller puts on what it starts, so it never touches what it did not start.

/// Set to [`MANAGED_BY_VALUE`] on everything the controller starts.
pub const MANAGED_BY: &str = "wasmcloud.dev/managed-by";
/// The value of [`MANAGED_BY`] for trellis.
pub const MANAGED_BY_VALUE: &str = "trellis";
/// The application that owns an instance (same key as wadm, so its tools read it).
pub const APP: &str = "wasmcloud.dev/appspec";
/// The scaler (plugin and trait) that started an instance.
pub const SCALER: &str = "wasmcloud.dev/scaler";
