//! An HTTP echo component: answers every request with `200` and a plain-text body naming the
//! method and path, followed by the request body if any. It is the application of the example
//! manifest `app.yaml` (served by the built-in HTTP server provider through a `wasi:http` link).

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasi::io::streams::StreamError;

/// The most `blocking-write-and-flush` accepts in one call.
const WRITE_CHUNK: usize = 4096;

struct Echo;

impl Guest for Echo {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let mut body = format!(
            "echo: {} {}\n",
            method_name(&request.method()),
            request.path_with_query().unwrap_or_else(|| "/".into())
        )
        .into_bytes();
        match read_body(&request) {
            Ok(bytes) => body.extend_from_slice(&bytes),
            Err(why) => {
                body.extend_from_slice(format!("(request body unreadable: {why})\n").as_bytes())
            }
        }

        let headers = Fields::from_list(&[
            (
                "content-type".to_string(),
                b"text/plain; charset=utf-8".to_vec(),
            ),
            (
                "content-length".to_string(),
                body.len().to_string().into_bytes(),
            ),
        ])
        .expect("static headers are valid");
        let response = OutgoingResponse::new(headers);
        response
            .set_status_code(200)
            .expect("200 is a valid status");
        let outgoing = response.body().expect("the body is taken once");
        ResponseOutparam::set(response_out, Ok(response));

        let stream = outgoing.write().expect("the stream is taken once");
        for chunk in body.chunks(WRITE_CHUNK) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                // The client went away; nothing left to tell it.
                return;
            }
        }
        drop(stream);
        let _ = OutgoingBody::finish(outgoing, None);
    }
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other.clone(),
    }
}

fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, String> {
    let incoming = request
        .consume()
        .map_err(|()| "body already consumed".to_string())?;
    let stream = incoming
        .stream()
        .map_err(|()| "body stream already taken".to_string())?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
        }
    }
    Ok(bytes)
}

wasi::http::proxy::export!(Echo);
