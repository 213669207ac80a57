//! The parts of the `trellis` binary that tests reuse: starting a local `nats-server`, the
//! client side of the controller API, the controller's config file, and plugin scaffolding.

pub mod client;
pub mod config;
pub mod connect;
pub mod failure;
pub mod node_flags;
pub mod store_flags;
/// Where `trellis up` and the tests get their `nats-server` (it lives with the other NATS
/// plumbing, so crates below the CLI can start one too).
pub use trellis_bus::nats_server;
pub mod plugin_run;
pub mod scaffold;
pub mod validate;
