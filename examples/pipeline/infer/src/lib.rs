//! The pipeline's middle stage, placed on a node with an accelerator (`accel=true`):
//! classifies a reading (`POST /classify`, body: the number) and hands the verdict to `store`
//! by lattice name; answers with its line followed by store's.

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
use bindings::wasi::logging::logging::{log, Level};
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

/// Readings above this are `hot`; the manifest may set `threshold` in the runtime config.
const DEFAULT_THRESHOLD: i64 = 30;

struct Infer;

impl Guest for Infer {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let text = common::request_text(&request);
        let Ok(reading) = text.trim().parse::<i64>() else {
            common::respond(
                response_out,
                400,
                &format!("infer: {text:?} is not a reading\n"),
            );
            return;
        };
        let threshold = config::get("threshold")
            .ok()
            .flatten()
            .and_then(|t| t.parse().ok())
            .unwrap_or(DEFAULT_THRESHOLD);
        let verdict = if reading > threshold { "hot" } else { "cold" };
        let host = config::get("trellis.host.id")
            .ok()
            .flatten()
            .unwrap_or_default();
        let mine = format!("infer@{host}: {reading} is {verdict}\n");
        log(
            Level::Info,
            "infer",
            &format!("{reading} is {verdict}; asking store"),
        );
        match common::call("store", "/record", &format!("{reading} {verdict}")) {
            Ok((200, rest)) => common::respond(response_out, 200, &format!("{mine}{rest}")),
            Ok((status, why)) => common::respond(
                response_out,
                502,
                &format!("{mine}store answered {status}: {why}"),
            ),
            Err(why) => common::respond(response_out, 502, &format!("{mine}{why}\n")),
        }
    }
}

wasi::http::proxy::export!(Infer);
