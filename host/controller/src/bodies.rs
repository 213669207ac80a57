//! The API's bytes on the wire: reading a request body strictly, and fitting an answer into
//! one NATS message.

use trellis_lattice::ErrorCode;

/// The body of a request that takes none: nothing, or `{}`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoBody {}

/// Reads a request body. An empty one means the defaults (wadm's clients send none for some
/// requests); anything else must be the JSON the request takes, and an unknown or misspelt
/// field is refused, naming it: `{"verison": "v1"}` must not deploy the latest version, nor
/// an unreadable `model.del` body delete every version.
// Public, hidden, only for the fuzz target of request bodies (fuzz/).
#[doc(hidden)]
pub fn parse_body<T: serde::de::DeserializeOwned + Default>(
    what: &str,
    payload: &[u8],
) -> Result<T, String> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(payload)
        .map_err(|e| format!("the body of {what} is not the JSON it takes: {e}"))
}

/// `payload`, or, when it is larger than the server takes in one message, a refusal the client
/// reads instead of a silence until its timeout.
pub(crate) fn fit(client: &async_nats::Client, payload: Vec<u8>) -> Vec<u8> {
    // Headroom for the reply subject and headers, which count toward the limit.
    let max = client.server_info().max_payload.saturating_sub(4 << 10);
    if payload.len() <= max {
        return payload;
    }
    let answer = serde_json::json!({
        "result": "error",
        "code": ErrorCode::TooLarge,
        "message": format!(
            "the answer is {} bytes, over the {max} bytes one NATS message carries here; \
             ask for less: `model.list` and `model.get` without a name take {{\"offset\": N, \"limit\": M}} (`trellis app list` pages by itself)",
            payload.len()
        ),
    });
    serde_json::to_vec(&answer).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_lattice::api::*;

    #[test]
    fn an_empty_body_means_the_defaults() {
        let request: DeployModelRequest = parse_body("model.deploy", b"").unwrap();
        assert_eq!(request.version, None);
        let request: UndeployModelRequest = parse_body("model.undeploy", b" \n").unwrap();
        assert!(!request.non_destructive);
    }

    #[test]
    fn bodies_as_wadm_clients_send_them_are_read() {
        let request: DeployModelRequest =
            parse_body("model.deploy", br#"{"version":"v1"}"#).unwrap();
        assert_eq!(request.version.as_deref(), Some("v1"));
        let request: DeleteModelRequest = parse_body("model.del", br#"{"version":null}"#).unwrap();
        assert_eq!(request.version, None);
        let _: UndeployModelRequest = parse_body("model.undeploy", b"{}").unwrap();
        let request: UndeployModelRequest =
            parse_body("model.undeploy", br#"{"non_destructive":true}"#).unwrap();
        assert!(request.non_destructive);
    }

    #[test]
    fn a_misspelt_or_unreadable_body_is_refused_naming_the_field() {
        let e =
            parse_body::<DeployModelRequest>("model.deploy", br#"{"verison":"v1"}"#).unwrap_err();
        assert!(e.contains("model.deploy") && e.contains("verison"), "{e}");
        let e = parse_body::<UndeployModelRequest>("model.undeploy", br#"{"nondestructive":true}"#)
            .unwrap_err();
        assert!(e.contains("nondestructive"), "{e}");
        // An unreadable delete must not read as "every version".
        let e = parse_body::<DeleteModelRequest>("model.del", b"version=v1").unwrap_err();
        assert!(e.contains("model.del"), "{e}");
        let e = parse_body::<PlanRequest>("model.plan", br#"{"version":1}"#).unwrap_err();
        assert!(e.contains("model.plan"), "{e}");
    }

    #[test]
    fn a_request_that_takes_no_body_refuses_one() {
        assert!(parse_body::<NoBody>("model.status", b"").is_ok());
        assert!(parse_body::<NoBody>("model.status", b"{}").is_ok());
        let e = parse_body::<NoBody>("model.status", br#"{"version":"v1"}"#).unwrap_err();
        assert!(e.contains("model.status") && e.contains("version"), "{e}");
    }
}
