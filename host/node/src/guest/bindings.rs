//! Host bindings for the capabilities a node gives components beyond WASI 0.2, generated from
//! the vendored WIT in `host/node/wit` (world `trellis:node/capabilities`).
//!
//! The types behind the world's resources live here too, so that the bindings depend on
//! nothing else of the node.

use async_nats::jetstream::kv;

wasmtime::component::bindgen!({
    path: "wit",
    world: "trellis:node/capabilities",
    imports: { default: async | trappable },
    with: {
        "wasi:keyvalue/store.bucket": Bucket,
    },
});

pub(crate) use wasi::config::store as config;
pub(crate) use wasi::keyvalue::{atomics, batch, store};
pub(crate) use wasi::logging::logging;

/// The concrete type behind a `wasi:keyvalue/store.bucket` resource: one opened bucket
/// (its operations are in [`super::keyvalue`]).
pub struct Bucket {
    pub(crate) name: String,
    pub(crate) store: kv::Store,
}
