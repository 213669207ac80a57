//! HTTP plumbing the three pipeline components share (included by each with `#[path]`): read a
//! request body, answer, and call the next stage by its lattice name with plain `wasi:http`.

// Each stage uses part of this file.
#![allow(dead_code)]

use wasi::http::outgoing_handler;
use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

/// The request's body as text.
pub fn request_text(request: &IncomingRequest) -> String {
    match request.consume() {
        Ok(body) => read_all(body),
        Err(()) => String::new(),
    }
}

/// The value of `name` in the request's query string, if any.
pub fn query_param(request: &IncomingRequest, name: &str) -> Option<String> {
    let path = request.path_with_query()?;
    let (_, query) = path.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.to_string())
    })
}

/// Answers with `status` and a plain-text body.
pub fn respond(response_out: ResponseOutparam, status: u16, body: &str) {
    let headers = Fields::from_list(&[(
        "content-type".to_string(),
        b"text/plain; charset=utf-8".to_vec(),
    )])
    .expect("static headers are valid");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("a valid status");
    let outgoing = response.body().expect("the body is taken once");
    ResponseOutparam::set(response_out, Ok(response));
    write_all(&outgoing, body.as_bytes());
    let _ = OutgoingBody::finish(outgoing, None);
}

/// `POST http://{name}{path}` with `body`: `name` is a lattice name (one label, no port), so
/// the node carries the call over NATS to whichever node runs that component.
pub fn call(name: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    let request = OutgoingRequest::new(Fields::new());
    request
        .set_method(&Method::Post)
        .map_err(|()| "bad method")?;
    request
        .set_scheme(Some(&Scheme::Http))
        .map_err(|()| "bad scheme")?;
    request
        .set_authority(Some(name))
        .map_err(|()| format!("bad lattice name {name:?}"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| format!("bad path {path:?}"))?;
    let outgoing = request.body().map_err(|()| "request body taken twice")?;
    // Send first, then stream the body: the host reads it while we write.
    let future = outgoing_handler::handle(request, None)
        .map_err(|e| format!("calling {name} failed: {e:?}"))?;
    write_all(&outgoing, body.as_bytes());
    OutgoingBody::finish(outgoing, None).map_err(|e| format!("sending to {name} failed: {e:?}"))?;
    future.subscribe().block();
    let response = future
        .get()
        .ok_or("no response although the future is ready")?
        .map_err(|()| "response taken twice")?
        .map_err(|e| format!("calling {name} failed: {e:?}"))?;
    let status = response.status();
    let text = match response.consume() {
        Ok(body) => read_all(body),
        Err(()) => String::new(),
    };
    Ok((status, text))
}

fn read_all(body: IncomingBody) -> String {
    let Ok(stream) = body.stream() else {
        return String::new();
    };
    let mut bytes = Vec::new();
    // Ends at the end of the body (or when the sender fails: a partial body is all there is).
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        bytes.extend_from_slice(&chunk);
    }
    drop(stream);
    String::from_utf8_lossy(&bytes).into_owned()
}

fn write_all(body: &OutgoingBody, bytes: &[u8]) {
    let Ok(stream) = body.write() else {
        return;
    };
    for chunk in bytes.chunks(4096) {
        if stream.blocking_write_and_flush(chunk).is_err() {
            break;
        }
    }
}
