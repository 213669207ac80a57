//! The pipeline's first stage, placed on a node with a camera (`camera=true`): takes a reading
//! (`?reading=N`, else a made-up one), hands it to `infer` by lattice name and answers with the
//! whole chain, one line per stage.

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

struct Sensor;

impl Guest for Sensor {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let reading = common::query_param(&request, "reading")
            .and_then(|r| r.parse::<i64>().ok())
            .unwrap_or_else(made_up_reading);
        let host = config::get("trellis.host.id")
            .ok()
            .flatten()
            .unwrap_or_default();
        let mine = format!("sensor@{host}: reading {reading}\n");
        log(
            Level::Info,
            "sensor",
            &format!("reading {reading}; asking infer"),
        );
        match common::call("infer", "/classify", &reading.to_string()) {
            Ok((200, rest)) => common::respond(response_out, 200, &format!("{mine}{rest}")),
            Ok((status, why)) => {
                log(
                    Level::Warn,
                    "sensor",
                    &format!("infer answered {status}: {why}"),
                );
                common::respond(
                    response_out,
                    502,
                    &format!("{mine}infer answered {status}: {why}"),
                )
            }
            Err(why) => common::respond(response_out, 502, &format!("{mine}{why}\n")),
        }
    }
}

/// A reading between 0 and 49 from the clock, for requests that bring none.
fn made_up_reading() -> i64 {
    (wasi::clocks::wall_clock::now().nanoseconds / 1000 % 50) as i64
}

wasi::http::proxy::export!(Sensor);
