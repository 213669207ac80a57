//! The parts of the `trellis` binary that tests reuse: starting a local `nats-server`, and the
//! client side of the controller API.

pub mod client;
pub mod nats_server;
