//! The parts of the `trellis` binary that tests reuse: starting a local `nats-server`, the
//! client side of the controller API, and the controller's config file.

pub mod client;
pub mod config;
pub mod nats_server;
