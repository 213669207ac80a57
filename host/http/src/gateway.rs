//! The NATS side of the HTTP API: one request on the controller's (or the lattice's) subject
//! per HTTP request, and how an answer becomes an HTTP response.
//!
//! The subjects are trellis-lattice's, the same ones `trellis app …` sends on; the JSON answer
//! is passed through unchanged, so an error reads the same over HTTP and over NATS.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use trellis_bus::gather::{gather, Window};
use trellis_lattice::api::Subjects;
use trellis_lattice::ctl::{self, CtlResponse};
use trellis_lattice::ErrorCode;

use crate::error;

/// How long a NATS request may take before the gateway says the controller is not answering
/// (the CLI waits as long).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Hosts answer `host.ping` at once; after an answer, the gateway waits 250 ms for more before
/// it stops listening, and never longer than a second in all.
const PING_WINDOW: Window = Window::until_quiet(Duration::from_millis(250), Duration::from_secs(1));

/// How long a host may take to tell its inventory; it answers from memory, at once.
const HOST_PATIENCE: Duration = Duration::from_secs(2);

/// The largest request body the gateway forwards. A body goes to the controller whole, as one
/// NATS message, and a NATS server carries at most its `max_payload` in one: 1 MiB unless it
/// is configured otherwise. A larger body could never arrive, so the HTTP side refuses it with
/// a 413 before sending anything (`routes`); a server configured lower is checked on each
/// request.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The refusal of a body over `limit` bytes (`size` when the request said it), worded for a
/// person who sent a manifest.
pub fn too_large(size: Option<usize>, limit: usize, why: &str) -> Unanswered {
    let size = size.map_or_else(|| "over".to_string(), |n| format!("{n} bytes,"));
    Unanswered {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!(
            "the request body is {size} over the limit of {limit} bytes: {why}; split a manifest this large into several apps"
        ),
    }
}

/// A client of one lattice's controller API and control interface.
#[derive(Clone)]
pub struct Gateway {
    client: async_nats::Client,
    lattice: String,
    api: Subjects,
    ctl: ctl::Subjects,
}

/// A failed NATS request, already worded for the user.
pub struct Unanswered {
    pub status: StatusCode,
    pub message: String,
}

impl IntoResponse for Unanswered {
    fn into_response(self) -> Response {
        error(self.status, &self.message)
    }
}

impl Gateway {
    /// A gateway to `lattice`'s controllers, whose API is under `api_prefix`.
    pub fn new(client: async_nats::Client, lattice: &str, api_prefix: &str) -> Self {
        Self {
            client,
            lattice: lattice.to_string(),
            api: Subjects::with_prefix(api_prefix, lattice),
            ctl: ctl::Subjects::new(lattice),
        }
    }

    pub fn lattice(&self) -> &str {
        &self.lattice
    }

    pub fn api(&self) -> &Subjects {
        &self.api
    }

    pub fn ctl(&self) -> &ctl::Subjects {
        &self.ctl
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Sends one request and returns the raw answer. The messages for silence and for nobody
    /// listening are the CLI's.
    pub async fn request(&self, subject: String, body: Vec<u8>) -> Result<Vec<u8>, Unanswered> {
        self.request_within(subject, body, REQUEST_TIMEOUT).await
    }

    async fn request_within(
        &self,
        subject: String,
        body: Vec<u8>,
        limit: Duration,
    ) -> Result<Vec<u8>, Unanswered> {
        let silence = || Unanswered {
            status: StatusCode::GATEWAY_TIMEOUT,
            message: format!(
                "no answer on {subject} within {limit:?}: is trellis running for lattice `{}`?",
                self.lattice
            ),
        };
        let max_payload = self.client.server_info().max_payload;
        if max_payload > 0 && body.len() > max_payload {
            return Err(too_large(
                Some(body.len()),
                max_payload,
                &format!(
                    "the NATS server of lattice `{}` carries at most that much in one message (its max_payload)",
                    self.lattice
                ),
            ));
        }
        let request = async_nats::Request::new()
            .payload(body.into())
            .timeout(Some(limit));
        let answer = tokio::time::timeout(
            limit + Duration::from_millis(100),
            self.client.send_request(subject.clone(), request),
        )
        .await
        .map_err(|_| silence())?
        .map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::TimedOut => silence(),
            async_nats::RequestErrorKind::NoResponders => Unanswered {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!(
                    "nobody in lattice `{}` listens on {subject}; start trellis with `trellis up`, or `trellis controller` and `trellis node`",
                    self.lattice
                ),
            },
            _ => Unanswered {
                status: StatusCode::BAD_GATEWAY,
                message: format!("request {subject} failed: {e}"),
            },
        })?;
        Ok(answer.payload.to_vec())
    }

    /// A controller API request whose answer becomes the response body as it is, with the
    /// HTTP status read from its `result` field ([`status_of`]).
    pub async fn forward(&self, subject: String, body: Vec<u8>) -> Response {
        match self.request(subject.clone(), body).await {
            Ok(answer) => match serde_json::from_slice::<serde_json::Value>(&answer) {
                Ok(value) => (
                    status_of(&value),
                    [(header::CONTENT_TYPE, "application/json")],
                    answer,
                )
                    .into_response(),
                Err(e) => error(
                    StatusCode::BAD_GATEWAY,
                    &format!("unreadable answer on {subject}: {e}"),
                ),
            },
            Err(unanswered) => unanswered.into_response(),
        }
    }

    /// A control-interface request: the `response` on success, the host's message otherwise.
    pub async fn ctl_request<T: serde::de::DeserializeOwned + Default>(
        &self,
        subject: String,
        what: &str,
    ) -> Result<Option<T>, Unanswered> {
        let answer = self.request(subject.clone(), Vec::new()).await?;
        let reply: CtlResponse<T> = serde_json::from_slice(&answer).map_err(|e| Unanswered {
            status: StatusCode::BAD_GATEWAY,
            message: format!("unreadable answer on {subject}: {e}"),
        })?;
        if !reply.success {
            return Err(Unanswered {
                status: StatusCode::BAD_GATEWAY,
                message: format!("the lattice could not {what}: {}", reply.message),
            });
        }
        Ok(reply.response)
    }

    /// Every host that answers a ping, sorted by id.
    pub async fn hosts(&self) -> Result<Vec<ctl::Host>, Unanswered> {
        let replies = gather(&self.client, self.ctl.host_ping(), Vec::new(), PING_WINDOW)
            .await
            .map_err(|e| Unanswered {
                status: StatusCode::BAD_GATEWAY,
                message: format!("cannot ping the hosts of lattice `{}`: {e}", self.lattice),
            })?;
        let mut hosts: Vec<ctl::Host> = replies
            .iter()
            .filter_map(|reply| {
                serde_json::from_slice::<CtlResponse<ctl::Host>>(&reply.payload)
                    .ok()?
                    .response
            })
            .collect();
        hosts.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(hosts)
    }

    /// What runs on one host. A host that does not answer within [`HOST_PATIENCE`] is a 404:
    /// other listeners on the control subjects (controllers noting commands) mean an unknown
    /// host shows as silence, not as "no responders".
    pub async fn inventory(&self, host: &str) -> Result<ctl::HostInventory, Unanswered> {
        let subject = self.ctl.host_get(host);
        let answer = match self
            .request_within(subject.clone(), Vec::new(), HOST_PATIENCE)
            .await
        {
            Ok(answer) => answer,
            Err(e)
                if e.status == StatusCode::SERVICE_UNAVAILABLE
                    || e.status == StatusCode::GATEWAY_TIMEOUT =>
            {
                return Err(Unanswered {
                    status: StatusCode::NOT_FOUND,
                    message: format!(
                        "no host {host} in lattice `{}` answered within {HOST_PATIENCE:?}; GET /api/v1/hosts lists them",
                        self.lattice
                    ),
                })
            }
            Err(e) => return Err(e),
        };
        let reply: CtlResponse<ctl::HostInventory> =
            serde_json::from_slice(&answer).map_err(|e| Unanswered {
                status: StatusCode::BAD_GATEWAY,
                message: format!("unreadable answer on {subject}: {e}"),
            })?;
        match reply {
            CtlResponse {
                success: true,
                response: Some(inventory),
                ..
            } => Ok(inventory),
            CtlResponse { message, .. } => Err(Unanswered {
                status: StatusCode::BAD_GATEWAY,
                message: format!("host {host} could not list its inventory: {message}"),
            }),
        }
    }

    /// One named config; a config that does not exist is a 404 with the CLI's message.
    pub async fn config(&self, name: &str) -> Result<BTreeMap<String, String>, Unanswered> {
        let subject = self.ctl.config_get(name);
        let answer = self.request(subject.clone(), Vec::new()).await?;
        let reply: CtlResponse<BTreeMap<String, String>> = serde_json::from_slice(&answer)
            .map_err(|e| Unanswered {
                status: StatusCode::BAD_GATEWAY,
                message: format!("unreadable answer on {subject}: {e}"),
            })?;
        if !reply.success {
            return Err(Unanswered {
                status: StatusCode::BAD_GATEWAY,
                message: format!(
                    "the lattice could not read config {name}: {}",
                    reply.message
                ),
            });
        }
        let values = reply.response.unwrap_or_default();
        if reply.code == Some(ErrorCode::NotFound) {
            return Err(Unanswered {
                status: StatusCode::NOT_FOUND,
                message: format!(
                    "lattice `{}` has no config named `{name}`; `trellis get config` lists them",
                    self.lattice
                ),
            });
        }
        Ok(values)
    }

    /// The names of every config: the keys of the bucket where nodes store them (the control
    /// interface cannot list them).
    pub async fn config_names(&self) -> Result<Vec<String>, Unanswered> {
        use futures::TryStreamExt;
        let bucket = ctl::config_bucket(&self.lattice);
        let js = async_nats::jetstream::new(self.client.clone());
        let Ok(kv) = js.get_key_value(&bucket).await else {
            // No node has joined this lattice yet: no configs.
            return Ok(Vec::new());
        };
        let failed = |e: &dyn std::fmt::Display| Unanswered {
            status: StatusCode::BAD_GATEWAY,
            message: format!("cannot list the keys of bucket {bucket}: {e}"),
        };
        let keys = kv.keys().await.map_err(|e| failed(&e))?;
        let mut names: Vec<String> = keys.try_collect().await.map_err(|e| failed(&e))?;
        names.sort();
        Ok(names)
    }
}

/// The HTTP status of a controller answer. A failed answer's `code` decides: `not_found` is
/// 404, `exists` and `conflict` 409, `invalid` 400, `unavailable` 503. Without a code (an older
/// controller), its `result`: `notfound` is 404, `error` 400. `created` is 201, and anything
/// else (success, ok, acknowledged, deleted, noop, newversion, a bare list) is 200.
pub fn status_of(answer: &serde_json::Value) -> StatusCode {
    let code = answer
        .get("code")
        .and_then(|code| serde_json::from_value::<ErrorCode>(code.clone()).ok());
    match (code, answer.get("result").and_then(|r| r.as_str())) {
        (Some(ErrorCode::NotFound), _) | (None, Some("notfound")) => StatusCode::NOT_FOUND,
        (Some(ErrorCode::Exists | ErrorCode::Conflict), _) => StatusCode::CONFLICT,
        (Some(ErrorCode::Invalid), _) | (None, Some("error")) => StatusCode::BAD_REQUEST,
        (Some(ErrorCode::Unavailable), _) => StatusCode::SERVICE_UNAVAILABLE,
        (Some(ErrorCode::TooLarge), _) => StatusCode::PAYLOAD_TOO_LARGE,
        (None, Some("created")) => StatusCode::CREATED,
        (None, _) => StatusCode::OK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_map_to_statuses() {
        let of = |v: serde_json::Value| status_of(&v);
        assert_eq!(
            of(serde_json::json!({"result": "notfound"})),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            of(serde_json::json!({"result": "error"})),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            of(serde_json::json!({"result": "created"})),
            StatusCode::CREATED
        );
        assert_eq!(
            of(serde_json::json!({"result": "acknowledged"})),
            StatusCode::OK
        );
        assert_eq!(of(serde_json::json!([])), StatusCode::OK);
        // The code, when there is one, says more than the result.
        assert_eq!(
            of(serde_json::json!({"result": "error", "code": "exists"})),
            StatusCode::CONFLICT
        );
        assert_eq!(
            of(serde_json::json!({"result": "error", "code": "conflict"})),
            StatusCode::CONFLICT
        );
        assert_eq!(
            of(serde_json::json!({"result": "error", "code": "not_found"})),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            of(serde_json::json!({"result": "error", "code": "unavailable"})),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            of(serde_json::json!({"result": "error", "code": "invalid"})),
            StatusCode::BAD_REQUEST
        );
    }
}
