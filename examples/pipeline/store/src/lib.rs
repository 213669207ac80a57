//! The pipeline's last stage, placed anywhere: records a verdict (`POST /record`) in
//! key-value, numbered by an atomic counter, and answers with its line.

#[path = "../../common.rs"]
mod common;

mod bindings {
    wit_bindgen::generate!({
        path: "../../../host/node/wit",
        world: "trellis:node/capabilities",
        generate_all,
    });
}

use bindings::wasi::config::store as config;
use bindings::wasi::keyvalue::{atomics, store};
use bindings::wasi::logging::logging::{log, Level};
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Store;

impl Guest for Store {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let record = common::request_text(&request);
        let host = config::get("trellis.host.id")
            .ok()
            .flatten()
            .unwrap_or_default();
        match save(&record) {
            Ok(n) => {
                log(Level::Info, "store", &format!("record {n}: {record}"));
                common::respond(
                    response_out,
                    200,
                    &format!("store@{host}: record {n} saved\n"),
                )
            }
            Err(why) => {
                log(Level::Error, "store", &why);
                common::respond(response_out, 500, &format!("store@{host}: {why}\n"))
            }
        }
    }
}

/// Numbers the record and keeps it under `records/{n}`.
fn save(record: &str) -> Result<u64, String> {
    let bucket = store::open("").map_err(|e| format!("cannot open the bucket: {e:?}"))?;
    let n = atomics::increment(&bucket, "records", 1)
        .map_err(|e| format!("cannot number the record: {e:?}"))?;
    bucket
        .set(&format!("records/{n}"), record.as_bytes())
        .map_err(|e| format!("cannot save record {n}: {e:?}"))?;
    Ok(n)
}

wasi::http::proxy::export!(Store);
