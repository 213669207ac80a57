//! Calls from one component to another of the same lattice, by lattice name, over NATS.
//!
//! A component makes a plain `wasi:http` outgoing request. When the request's host is a single
//! label with no port (`http://infer/classify`, not `infer.example.com`, `localhost` or
//! `infer:8080`), it names a lattice component and goes over NATS instead of TCP; everything
//! else goes out as ordinary HTTP. The name is tried as `{caller's app}-{name}` first (the id
//! the controller gives a manifest component called `name`) and then as the component id
//! itself, so `http://infer/` reaches the sibling `infer` and `http://pipeline-infer/` the same
//! component by id.
//!
//! Every node running a component subscribes to `trellis.{lattice}.call.{component_id}` in a
//! queue group of the same name: NATS hands each call to one of them, which spreads calls over
//! the nodes, and a node that stops or vanishes drops out of the group at once, so later calls
//! go to the others. The callee node runs the request through the component's
//! `wasi:http/incoming-handler`, exactly as if it had come from its HTTP server.
//!
//! Requests and responses travel whole in one NATS message each (HTTP headers as NATS headers,
//! the body as the payload), so a body is bounded by the server's `max_payload` (1 MiB by
//! default). The caller sees failures the way it would behind an HTTP gateway: `503` when no
//! node runs the callee, `504` on a timeout, `413` for a body too large, `502` otherwise, each
//! with a plain-text reason. See docs/decisions/0004-lattice-calls.md.
//!
//! This module is the wire protocol and the calling side; a node answers the calls to its
//! components in the host's call server (`host::call_server`).

use std::time::Duration;

use bytes::Bytes;
use hyper::http::{self, HeaderName, HeaderValue, Uri};
use tracing::{debug, warn};

/// How long a caller waits for a callee's answer at most; the caller's own deadline, when
/// sooner, wins, and travels with the call so that the callee stops when it passes.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// What is left of the caller's deadline when the call was sent, in milliseconds.
pub(crate) const DEADLINE_HEADER: &str = "Trellis-Deadline-Ms";

pub(crate) const METHOD_HEADER: &str = "Trellis-Method";
pub(crate) const PATH_HEADER: &str = "Trellis-Path";
pub(crate) const CALLER_HEADER: &str = "Trellis-Caller";
pub(crate) const STATUS_HEADER: &str = "Trellis-Status";
/// Set by a node that did not run the call (it is stopping, or no longer runs the component):
/// the call is safe to send again, and another member of the queue group will likely take it.
pub(crate) const REFUSED_HEADER: &str = "Trellis-Refused";
/// How many refusals a call takes before the caller gives up on a component id.
const REFUSALS: usize = 3;
/// Set on answers the node made up (no callee, timeout, …) rather than the callee's.
pub(crate) const ERROR_HEADER: &str = "trellis-error";

/// Headers that describe one HTTP connection, not the message: never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "host",
];

/// The subject (and queue group) of calls to `component_id`, if the id fits in one subject
/// token (manifest ids always do: they are letters, digits, `-` and `_`).
pub(crate) fn call_subject(lattice: &str, component_id: &str) -> Option<String> {
    let fits = !component_id.is_empty()
        && !component_id
            .chars()
            .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace());
    fits.then(|| format!("trellis.{lattice}.call.{component_id}"))
}

/// The lattice name an outgoing request addresses, if it addresses one (see the module docs).
pub(crate) fn lattice_name(uri: &Uri) -> Option<&str> {
    let authority = uri.authority()?;
    if authority.port().is_some() {
        return None;
    }
    let host = authority.host();
    let single_label = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    (single_label && !host.eq_ignore_ascii_case("localhost")).then_some(host)
}

/// The component ids a call to `name` from a component of `app` may mean, most likely first.
pub(crate) fn candidate_ids(name: &str, app: Option<&str>) -> Vec<String> {
    let mut ids = Vec::with_capacity(2);
    if let Some(app) = app {
        ids.push(format!("{}-{}", normalise(app), normalise(name)));
    }
    if !ids.contains(&name.to_string()) {
        ids.push(name.to_string());
    }
    ids
}

/// As the controller normalises manifest names into ids.
fn normalise(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The calling side: sends requests to whichever node runs the callee.
pub(crate) struct LatticeCalls {
    client: async_nats::Client,
    lattice: String,
}

impl LatticeCalls {
    pub(crate) fn new(client: async_nats::Client, lattice: String) -> Self {
        Self { client, lattice }
    }

    /// The largest body a call or its answer can carry: one NATS message.
    pub(crate) fn max_payload(&self) -> usize {
        self.client.max_payload()
    }

    /// Sends the request to the first of `candidates` that some node runs, and returns its
    /// answer, or a gateway-style error answer saying what went wrong.
    pub(crate) async fn call(
        &self,
        candidates: &[String],
        caller: &str,
        parts: http::request::Parts,
        body: Bytes,
        deadline: tokio::time::Instant,
    ) -> http::Response<Bytes> {
        self.try_call(candidates, caller, parts, body, deadline)
            .await
            .unwrap_or_else(|reason| {
                debug!(caller, %reason, "lattice call found no callee");
                error_response(503, reason)
            })
    }

    /// [`LatticeCalls::call`], saying apart that no node runs any candidate (the reason, as
    /// the 503 would give it): a caller that may wait for one (the HTTP server, for an app
    /// scaled to zero) tries again.
    pub(crate) async fn try_call(
        &self,
        candidates: &[String],
        caller: &str,
        parts: http::request::Parts,
        body: Bytes,
        deadline: tokio::time::Instant,
    ) -> Result<http::Response<Bytes>, String> {
        let mut headers = request_headers(&parts, caller);
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(error_response(
                504,
                format!(
                    "the caller's deadline passed before it called {}",
                    candidates.join(" or ")
                ),
            ));
        }
        headers.insert(DEADLINE_HEADER, left.as_millis().to_string().as_str());
        let timeout = left.min(CALL_TIMEOUT);
        'candidates: for id in candidates {
            let Some(subject) = call_subject(&self.lattice, id) else {
                continue;
            };
            let mut refusals = 0;
            let reply = loop {
                let request = async_nats::Request::new()
                    .payload(body.clone())
                    .headers(headers.clone())
                    .timeout(Some(timeout));
                let reply = self.client.send_request(subject.clone(), request).await;
                let refused = reply.as_ref().is_ok_and(|reply| {
                    reply
                        .headers
                        .as_ref()
                        .is_some_and(|h| h.get(REFUSED_HEADER).is_some())
                });
                if !refused {
                    break reply;
                }
                refusals += 1;
                debug!(caller, callee = %id, refusals, "a node refused the call; sending it again");
                if refusals == REFUSALS {
                    continue 'candidates;
                }
            };
            match reply {
                Ok(reply) => return Ok(decode_response(id, reply)),
                Err(e) => {
                    use async_nats::RequestErrorKind as Kind;
                    let (status, reason) = match e.kind() {
                        Kind::NoResponders => continue,
                        Kind::TimedOut => (
                            504,
                            format!("component {id} did not answer within {timeout:?}"),
                        ),
                        Kind::MaxPayloadExceeded => (
                            413,
                            format!(
                                "the request to component {id} is larger than NATS carries in one message ({} bytes)",
                                self.client.max_payload()
                            ),
                        ),
                        _ => (502, format!("calling component {id} over NATS failed: {e}")),
                    };
                    warn!(caller, callee = %id, status, %reason, "lattice call failed");
                    return Ok(error_response(status, reason));
                }
            }
        }
        Err(format!(
            "component {} is not running on any node of lattice {}",
            candidates.join(" or "),
            self.lattice,
        ))
    }
}

fn request_headers(parts: &http::request::Parts, caller: &str) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(METHOD_HEADER, parts.method.as_str());
    headers.insert(
        PATH_HEADER,
        parts.uri.path_and_query().map_or("/", |path| path.as_str()),
    );
    headers.insert(CALLER_HEADER, caller);
    copy_headers(&parts.headers, &mut headers);
    headers
}

pub(crate) fn copy_headers(from: &http::HeaderMap, to: &mut async_nats::HeaderMap) {
    for (name, value) in from {
        if HOP_BY_HOP.contains(&name.as_str()) || name.as_str().starts_with("trellis-") {
            continue;
        }
        match value.to_str() {
            Ok(value) => to.append(name.as_str(), value),
            // NATS headers are text; a binary header value cannot cross.
            Err(_) => debug!(header = %name, "header value is not text; not forwarded"),
        }
    }
}

fn decode_response(callee: &str, reply: async_nats::Message) -> http::Response<Bytes> {
    let Some(headers) = reply.headers else {
        return error_response(
            502,
            format!("component {callee} answered without a status (not a trellis node?)"),
        );
    };
    let status = headers
        .get(STATUS_HEADER)
        .and_then(|status| status.as_str().parse::<u16>().ok());
    let Some(status) = status else {
        return error_response(
            502,
            format!("component {callee} answered without a valid {STATUS_HEADER} header"),
        );
    };
    let mut response = http::Response::builder().status(status);
    for (name, values) in headers.iter() {
        let name: &str = name.as_ref();
        if name.eq_ignore_ascii_case(STATUS_HEADER) {
            continue;
        }
        let Ok(name) = HeaderName::try_from(name) else {
            continue;
        };
        for value in values {
            if let Ok(value) = HeaderValue::try_from(value.as_str()) {
                response = response.header(name.clone(), value);
            }
        }
    }
    response
        .body(reply.payload)
        .unwrap_or_else(|e| error_response(502, format!("component {callee}'s answer: {e}")))
}

/// An answer the node makes up, marked with [`ERROR_HEADER`].
pub(crate) fn error_response(status: u16, reason: String) -> http::Response<Bytes> {
    http::Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .header(ERROR_HEADER, "true")
        .body(Bytes::from(reason))
        .expect("a valid status and static headers")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_label_hosts_without_a_port_are_lattice_names() {
        let name = |uri: &str| lattice_name(&uri.parse().unwrap()).map(str::to_string);
        assert_eq!(name("http://infer/classify").as_deref(), Some("infer"));
        assert_eq!(
            name("http://pipeline-store/").as_deref(),
            Some("pipeline-store")
        );
        assert_eq!(name("http://infer.example.com/"), None);
        assert_eq!(name("http://localhost/"), None);
        assert_eq!(name("http://infer:8080/"), None);
        assert_eq!(name("http://127.0.0.1/"), None);
        assert_eq!(name("/relative"), None);
    }

    #[test]
    fn names_resolve_within_the_app_first() {
        assert_eq!(
            candidate_ids("infer", Some("pipeline")),
            vec!["pipeline-infer".to_string(), "infer".to_string()]
        );
        assert_eq!(candidate_ids("infer", None), vec!["infer".to_string()]);
    }

    #[test]
    fn subjects_need_one_token() {
        assert_eq!(
            call_subject("default", "app-echo").as_deref(),
            Some("trellis.default.call.app-echo")
        );
        assert_eq!(call_subject("default", "a.b"), None);
        assert_eq!(call_subject("default", ""), None);
    }
}
