//! Outgoing HTTP: `GET /fetch?url=URL[&method=GET|POST][&mb=MB]` sends one request through
//! `wasi:http/outgoing-handler` (with an MB MiB body if asked) and reports the host's answer:
//! 200 `status S: <first 200 bytes>` when a response arrives, 502 `error: <ErrorCode>` when the
//! request fails. A failed body write is appended on a second line.
//! `http://NAME/` addresses another component of the lattice; nothing here treats it specially.

use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;

use crate::{describe, number, param, write_chunk, Reply, CHUNK, MIB};

/// How much of the response body the report quotes.
const QUOTE: usize = 200;

pub fn fetch(params: &[(String, String)]) -> Reply {
    let Some(url) = param(params, "url") else {
        return (400, "expected ?url=URL".to_string());
    };
    let mb = match param(params, "mb") {
        Some(_) => match number(params, "mb") {
            Ok(mb) => Some(mb),
            Err(reply) => return reply,
        },
        None => None,
    };
    let method = match param(params, "method") {
        Some("GET") => Method::Get,
        Some("POST") => Method::Post,
        Some(other) => Method::Other(other.to_string()),
        None if mb.is_some() => Method::Post,
        None => Method::Get,
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return (400, format!("expected an absolute URL, got {url:?}"));
    };
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };

    let request = OutgoingRequest::new(Fields::new());
    if request.set_method(&method).is_err()
        || request.set_scheme(Some(&scheme)).is_err()
        || request.set_authority(Some(authority)).is_err()
        || request.set_path_with_query(Some(&path)).is_err()
    {
        return (400, format!("the host rejects the request line of {url:?}"));
    }
    let body = request.body().expect("the body is taken once");
    // Send first, then write: the body streams to the host as it goes, so an oversized body
    // meets the host's limit instead of filling a buffer nobody reads.
    let response = match outgoing_handler::handle(request, None) {
        Ok(response) => response,
        Err(code) => return (502, format!("error: {code:?}")),
    };
    let mut note = String::new();
    if let Some(mb) = mb {
        let total = mb.saturating_mul(MIB);
        let stream = body.write().expect("the stream is taken once");
        let chunk = vec![b'x'; CHUNK];
        let mut sent = 0;
        while sent < total {
            if let Err(e) = write_chunk(&stream, &chunk) {
                note = format!(
                    "\nwrite failed after {sent} of {total} bytes: {}",
                    describe(&e)
                );
                break;
            }
            sent += CHUNK as u64;
        }
    }
    if note.is_empty() {
        if let Err(code) = OutgoingBody::finish(body, None) {
            note = format!("\nfinish failed: {code:?}");
        }
    } else {
        // Dropped unfinished, the body aborts the request rather than leaving it waiting.
        drop(body);
    }

    let result = loop {
        match response.get() {
            Some(result) => break result.expect("the response is taken once"),
            None => response.subscribe().block(),
        }
    };
    let incoming = match result {
        Ok(incoming) => incoming,
        Err(code) => return (502, format!("error: {code:?}{note}")),
    };
    let status = incoming.status();
    let body = incoming.consume().expect("the body is consumed once");
    let stream = body.stream().expect("the stream is taken once");
    let mut quote = Vec::new();
    while quote.len() < QUOTE {
        match stream.blocking_read((QUOTE - quote.len()) as u64) {
            Ok(bytes) => quote.extend(bytes),
            Err(StreamError::Closed) => break,
            Err(e) => {
                note.push_str(&format!("\nbody error: {}", describe(&e)));
                break;
            }
        }
    }
    let quote = String::from_utf8_lossy(&quote);
    (200, format!("status {status}: {quote}{note}"))
}
