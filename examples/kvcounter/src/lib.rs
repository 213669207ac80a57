//! Counts visits per region in key-value: every request adds one to `visits/{region}` in the
//! component's bucket (`wasi:keyvalue/atomics`) and answers with all regions' counts, read in
//! one batch. The region is the runtime config key `region` if the manifest sets one, else the
//! `region` label of the node serving the request (`trellis.host.label.region`).
//!
//! `GET /counts` only reads. The counts live in NATS JetStream, not in the node: when the node
//! serving the app goes away, another node carries on from the same numbers.

mod bindings {
    wit_bindgen::generate!({
        path: "../../host/node/wit",
        world: "trellis:node/capabilities",
        generate_all,
    });
}

use bindings::wasi::config::store as config;
use bindings::wasi::keyvalue::{atomics, batch, store};
use bindings::wasi::logging::logging::{log, Level};
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

const PREFIX: &str = "visits/";

struct KvCounter;

impl Guest for KvCounter {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let (status, body) = match visit(path != "/counts") {
            Ok(body) => (200, body),
            Err(why) => {
                log(Level::Error, "kvcounter", &why);
                (500, format!("{{\"error\":{}}}\n", json_string(&why)))
            }
        };
        respond(response_out, status, &body);
    }
}

/// Counts one visit (if `count`) and describes all counts as JSON.
fn visit(count: bool) -> Result<String, String> {
    let region = config_value("region")
        .or_else(|| config_value("trellis.host.label.region"))
        .unwrap_or_else(|| "unknown".into());
    let host = config_value("trellis.host.id").unwrap_or_default();
    let bucket = store::open("").map_err(|e| format!("cannot open the bucket: {e:?}"))?;
    let key = format!("{PREFIX}{region}");
    let mine = if count {
        let n = atomics::increment(&bucket, &key, 1)
            .map_err(|e| format!("cannot count the visit: {e:?}"))?;
        log(
            Level::Info,
            "kvcounter",
            &format!("visit {n} in region {region}"),
        );
        Some(n)
    } else {
        None
    };

    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let page = bucket
            .list_keys(cursor)
            .map_err(|e| format!("cannot list the counters: {e:?}"))?;
        keys.extend(page.keys.into_iter().filter(|k| k.starts_with(PREFIX)));
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    keys.sort();
    let values =
        batch::get_many(&bucket, &keys).map_err(|e| format!("cannot read the counters: {e:?}"))?;
    let mut total = 0u64;
    let mut counts = Vec::new();
    for (key, value) in values.into_iter().flatten() {
        let n: u64 = String::from_utf8_lossy(&value).trim().parse().unwrap_or(0);
        total += n;
        counts.push(format!("{}:{n}", json_string(&key[PREFIX.len()..])));
    }
    let count = mine.map_or_else(|| "null".to_string(), |n| n.to_string());
    Ok(format!(
        "{{\"region\":{},\"host\":{},\"count\":{count},\"counts\":{{{}}},\"total\":{total}}}\n",
        json_string(&region),
        json_string(&host),
        counts.join(",")
    ))
}

fn config_value(key: &str) -> Option<String> {
    config::get(key).ok().flatten().filter(|v| !v.is_empty())
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn respond(response_out: ResponseOutparam, status: u16, body: &str) {
    let headers = Fields::from_list(&[("content-type".to_string(), b"application/json".to_vec())])
        .expect("static headers are valid");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("a valid status");
    let outgoing = response.body().expect("the body is taken once");
    ResponseOutparam::set(response_out, Ok(response));
    let stream = outgoing.write().expect("the stream is taken once");
    for chunk in body.as_bytes().chunks(4096) {
        if stream.blocking_write_and_flush(chunk).is_err() {
            return;
        }
    }
    drop(stream);
    let _ = OutgoingBody::finish(outgoing, None);
}

wasi::http::proxy::export!(KvCounter);
