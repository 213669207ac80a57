//! Whole bodies and made-up answers in the body type wasmtime-wasi-http's requests and responses
//! carry, for the HTTP server, lattice calls and requests served here alike.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// A whole body in the type wasmtime-wasi-http's requests and responses carry (its
/// `HyperOutgoingBody` and `WasiBody` are the same type).
pub(crate) fn full_body(bytes: Bytes) -> HyperOutgoingBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A plain-text response with the body type wasmtime-wasi-http's responses have.
pub(crate) fn text_response(status: u16, body: String) -> hyper::Response<HyperOutgoingBody> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(full_body(Bytes::from(body)))
        .expect("a static status and header are valid")
}
