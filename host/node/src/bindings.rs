//! Host bindings for the capabilities a node gives components beyond WASI 0.2, generated from
//! the vendored WIT in `host/node/wit` (world `trellis:node/capabilities`).

wasmtime::component::bindgen!({
    path: "wit",
    world: "trellis:node/capabilities",
    imports: { default: async | trappable },
    with: {
        "wasi:keyvalue/store.bucket": crate::keyvalue::Bucket,
    },
});

pub(crate) use wasi::config::store as config;
pub(crate) use wasi::keyvalue::{atomics, batch, store};
pub(crate) use wasi::logging::logging;
