//! A hostile HTTP component: the fixture of the node sandbox's end-to-end test. Every route is
//! one attempt to get out of the sandbox or past one of its limits: another app's key-value
//! bucket, too many buckets, an outgoing request the app was not granted, a busy loop, unbounded
//! memory, unbounded host resources, oversized bodies, the host's files and environment.
//!
//! It reports, it does not decide: each route makes its attempt and answers, in plain text, with
//! exactly what the host gave back, so the test asserts on the status and the body. `/loop` and
//! `/memory` never answer on their own; the host has to stop them.
//!
//! | route                                   | attempt                                        |
//! |-----------------------------------------|------------------------------------------------|
//! | `GET /`                                 | none: `hostile ok`                             |
//! | `GET /kv/open?name=NAME`                | open bucket NAME, list its keys, write a key   |
//! | `GET /kv/many?n=N`                      | open and write buckets `hostile-0`…`hostile-{N-1}` |
//! | `GET /kv/default`                       | increment `count` in the component's own bucket |
//! | `GET /fetch?url=URL[&method=M][&mb=MB]` | outgoing request, with an MB MiB body if asked |
//! | `GET /loop`                             | spin forever without calling the host          |
//! | `GET /memory`                           | allocate 1 MiB after 1 MiB, forever            |
//! | `GET /resources?n=N`                    | create N `fields` resources and keep them      |
//! | `POST /body`                            | read the whole request body                    |
//! | `GET /big-response?mb=MB`               | answer with an MB MiB body                     |
//! | `GET /file?path=P`                      | read a file of the host                        |
//! | `GET /env`                              | list the environment variables                 |
//!
//! Query values are percent-decoded (`%2F`, `%3A`, …); `+` is kept as is.

mod bindings {
    wit_bindgen::generate!({
        path: "../../../host/node/wit",
        world: "trellis:node/capabilities",
        generate_all,
    });
}

mod fetch;
mod kv;

use std::hint::black_box;

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{
    http_error_code, Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse,
    ResponseOutparam,
};
use wasi::io::streams::{OutputStream, StreamError};

/// Bodies, sent or received, move in chunks of this size.
const CHUNK: usize = 64 * 1024;
const MIB: u64 = 1024 * 1024;

/// A status and a plain-text body.
type Reply = (u16, String);

struct Hostile;

impl Guest for Hostile {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_default();
        let (path, query) = split_query(&target);
        let (status, body) = match (request.method(), path) {
            (Method::Get, "/") => (200, "hostile ok".to_string()),
            (Method::Get, "/kv/open") => match param(&query, "name") {
                Some(name) => kv::open(name),
                None => (400, "expected ?name=BUCKET".to_string()),
            },
            (Method::Get, "/kv/many") => with_number(&query, "n", kv::open_many),
            (Method::Get, "/kv/default") => kv::count(),
            (Method::Get, "/fetch") => fetch::fetch(&query),
            (Method::Get, "/loop") => spin(),
            (Method::Get, "/memory") => grow_memory(),
            (Method::Get, "/resources") => with_number(&query, "n", hold_fields),
            (Method::Post, "/body") => read_body(&request),
            (Method::Get, "/big-response") => match number(&query, "mb") {
                Ok(mb) => return stream_response(response_out, mb),
                Err(reply) => reply,
            },
            (Method::Get, "/file") => match param(&query, "path") {
                Some(path) => match std::fs::read(path) {
                    Ok(bytes) => (200, format!("read {} bytes", bytes.len())),
                    Err(e) => (500, format!("error: {e}")),
                },
                None => (400, "expected ?path=FILE".to_string()),
            },
            (Method::Get, "/env") => {
                let names: Vec<String> = std::env::vars_os()
                    .map(|(name, _)| name.to_string_lossy().into_owned())
                    .collect();
                (200, format!("{} vars: {}", names.len(), names.join(",")))
            }
            (method, path) => (404, format!("no route {method:?} {path}")),
        };
        respond(response_out, status, &body);
    }
}

/// Busy work the optimiser cannot remove, and no call to the host: only the host's
/// interruption (epoch deadline, fuel) can end it.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocates and touches 1 MiB after 1 MiB until the host refuses to grow the memory.
fn grow_memory() -> ! {
    let mut chunks = Vec::new();
    loop {
        let mut chunk = vec![0u8; MIB as usize];
        // Write every page: fresh pages of a growing memory are zero, and an untouched
        // allocation must not pass for memory actually in use.
        for page in chunk.chunks_mut(4096) {
            page[0] = 1;
        }
        chunks.push(black_box(chunk));
        black_box(&chunks);
    }
}

/// Fills the host's resource table with `n` `fields` resources.
fn hold_fields(n: u64) -> Reply {
    let mut fields = Vec::new();
    for _ in 0..n {
        fields.push(Fields::new());
    }
    let created = black_box(&fields).len();
    // Never dropped: the host's table only shrinks when the instance goes.
    std::mem::forget(fields);
    (200, format!("created {created}"))
}

/// Reads the request body to its end, counting bytes without keeping them.
fn read_body(request: &IncomingRequest) -> Reply {
    let body = request.consume().expect("the body is consumed once");
    let stream = body.stream().expect("the stream is taken once");
    let mut read = 0u64;
    loop {
        match stream.blocking_read(CHUNK as u64) {
            Ok(bytes) => read += bytes.len() as u64,
            Err(StreamError::Closed) => return (200, format!("read {read} bytes")),
            Err(e) => {
                return (
                    500,
                    format!("body error after {read} bytes: {}", describe(&e)),
                )
            }
        }
    }
}

/// Answers 200 with `mb` MiB of body; stops (leaving the body unfinished) if a write fails.
fn stream_response(response_out: ResponseOutparam, mb: u64) {
    let (body, stream) = start_response(response_out, 200);
    let chunk = vec![b'x'; CHUNK];
    for _ in 0..mb.saturating_mul(MIB / CHUNK as u64) {
        if write_chunk(&stream, &chunk).is_err() {
            return;
        }
    }
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}

fn respond(response_out: ResponseOutparam, status: u16, body: &str) {
    let (outgoing, stream) = start_response(response_out, status);
    if write_chunk(&stream, body.as_bytes()).is_err() {
        return;
    }
    drop(stream);
    let _ = OutgoingBody::finish(outgoing, None);
}

fn start_response(response_out: ResponseOutparam, status: u16) -> (OutgoingBody, OutputStream) {
    let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
        .expect("static headers are valid");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("a valid status");
    let body = response.body().expect("the body is taken once");
    ResponseOutparam::set(response_out, Ok(response));
    let stream = body.write().expect("the stream is taken once");
    (body, stream)
}

/// Writes all of `bytes` as fast as the stream takes them, then flushes.
/// (`blocking-write-and-flush` takes at most 4096 bytes a call, hence `check-write`.)
fn write_chunk(stream: &OutputStream, mut bytes: &[u8]) -> Result<(), StreamError> {
    while !bytes.is_empty() {
        let room = stream.check_write()?;
        if room == 0 {
            stream.subscribe().block();
            continue;
        }
        let n = bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        stream.write(&bytes[..n])?;
        bytes = &bytes[n..];
    }
    stream.blocking_flush()
}

/// A stream error as the host reported it: the HTTP error code when there is one.
fn describe(error: &StreamError) -> String {
    match error {
        StreamError::Closed => "closed".to_string(),
        StreamError::LastOperationFailed(e) => match http_error_code(e) {
            Some(code) => format!("{code:?}"),
            None => e.to_debug_string(),
        },
    }
}

/// Splits `/path?a=1&b=2` into the path and its decoded parameters.
fn split_query(target: &str) -> (&str, Vec<(String, String)>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect();
    (path, params)
}

fn percent_decode(text: &str) -> String {
    let digit = |b: &u8| (*b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(high), Some(low)) = (
                bytes.get(i + 1).and_then(digit),
                bytes.get(i + 2).and_then(digit),
            ) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn number(params: &[(String, String)], name: &str) -> Result<u64, Reply> {
    param(params, name)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| (400, format!("expected ?{name}=NUMBER")))
}

fn with_number(params: &[(String, String)], name: &str, attempt: fn(u64) -> Reply) -> Reply {
    match number(params, name) {
        Ok(n) => attempt(n),
        Err(reply) => reply,
    }
}

wasi::http::proxy::export!(Hostile);
