//! The parts of the `trellis` binary that tests reuse: starting a local `nats-server`, the
//! client side of the controller API, the controller's config file, and plugin scaffolding.

pub mod client;
pub mod config;
pub mod connect;
pub mod failure;
pub mod nats_server;
pub mod scaffold;
pub mod validate;
