//! The bodies of the `trellis` commands, one file per group: `up`, `controller` and `node` run
//! a part of the lattice; `app`, `get` and `plugin` are the client side. Each group's `run`
//! takes its parsed arguments from [`crate::args`]. (Part of the binary, not of the
//! `trellis_cli` library: they print for people and scripts; the library does the talking.)

pub mod app;
pub mod controller;
pub mod get;
pub mod node;
pub mod plugin;
pub mod plugin_run;
pub mod up;

pub use trellis_cli::failure::api_error;
