//! The endpoints under `/api/v1`, each a thin translation of an HTTP request into one request
//! on the controller's NATS API (or the lattice's control interface).
//!
//! [`endpoints`] is the single list the router is built from; a test holds it against the
//! OpenAPI document, both ways, so neither can drift from the other.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use trellis_lattice::api::{
    DeleteModelRequest, DeployModelRequest, GetModelRequest, HostsRequest, ListModelsRequest,
    PlanRequest, RolloutAction, RolloutRequest, UndeployModelRequest,
};
use trellis_lattice::ctl::Link;

use crate::events;
use crate::gateway::{too_large, Gateway, Unanswered, MAX_BODY_BYTES};

type Shared = Arc<Gateway>;

/// The OpenAPI 3 document of this API, served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// One endpoint: the HTTP method (as OpenAPI spells it, lower case), the path template and
/// what serves it.
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    serve: MethodRouter<Shared>,
}

/// Every endpoint of the API.
pub fn endpoints() -> Vec<Endpoint> {
    fn at(method: &'static str, path: &'static str, serve: MethodRouter<Shared>) -> Endpoint {
        Endpoint {
            method,
            path,
            serve,
        }
    }
    use MethodFilter as M;
    vec![
        at("get", "/api/v1/lattice", on(M::GET, lattice)),
        at("get", "/api/v1/openapi.json", on(M::GET, openapi)),
        at("get", "/api/v1/apps", on(M::GET, list_apps)),
        at("post", "/api/v1/apps", on(M::POST, put_app)),
        at("post", "/api/v1/validate", on(M::POST, validate)),
        at("get", "/api/v1/apps/{name}", on(M::GET, get_app)),
        at("delete", "/api/v1/apps/{name}", on(M::DELETE, delete_app)),
        at("get", "/api/v1/apps/{name}/versions", on(M::GET, versions)),
        at("get", "/api/v1/apps/{name}/status", on(M::GET, status)),
        at("get", "/api/v1/apps/{name}/history", on(M::GET, history)),
        at("get", "/api/v1/apps/{name}/plan", on(M::GET, plan)),
        at("post", "/api/v1/apps/{name}/deploy", on(M::POST, deploy)),
        at(
            "post",
            "/api/v1/apps/{name}/undeploy",
            on(M::POST, undeploy),
        ),
        at(
            "post",
            "/api/v1/apps/{name}/rollback",
            on(M::POST, rollback),
        ),
        at(
            "get",
            "/api/v1/apps/{name}/rollout",
            on(M::GET, rollout_get),
        ),
        at(
            "post",
            "/api/v1/apps/{name}/rollout/promote",
            on(M::POST, rollout_promote),
        ),
        at(
            "post",
            "/api/v1/apps/{name}/rollout/abort",
            on(M::POST, rollout_abort),
        ),
        at("get", "/api/v1/hosts", on(M::GET, hosts)),
        at("get", "/api/v1/hosts/{host}", on(M::GET, inventory)),
        at("get", "/api/v1/vitals", on(M::GET, vitals)),
        at("get", "/api/v1/links", on(M::GET, links)),
        at("get", "/api/v1/configs", on(M::GET, config_names)),
        at("get", "/api/v1/configs/{name}", on(M::GET, config)),
        at("get", "/api/v1/plugins", on(M::GET, plugins)),
        at("get", "/api/v1/events", on(M::GET, events::stream)),
    ]
}

/// The API's router; two endpoints on one path merge into one route.
pub fn api_router() -> Router<Shared> {
    endpoints()
        .into_iter()
        .fold(Router::new(), |router, e| router.route(e.path, e.serve))
}

#[derive(Debug, Default, Deserialize)]
struct VersionQuery {
    version: Option<String>,
}

fn json_body<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("request types serialise")
}

/// Checks an optional JSON body against the request type the controller reads. The controller
/// takes an unreadable body for an empty one (wadm does too), which over HTTP would turn a typo
/// in `{"version": …}` into a deploy of the latest version; the gateway refuses it instead.
fn checked_body<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<Vec<u8>, Unanswered> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(b"{}".to_vec());
    }
    serde_json::from_slice::<T>(body).map_err(|e| Unanswered {
        status: StatusCode::BAD_REQUEST,
        message: format!("the body of {what} is not valid: {e}"),
    })?;
    Ok(body.to_vec())
}

/// Why a body over [`MAX_BODY_BYTES`] is refused.
const BODY_LIMIT_REASON: &str =
    "the controller's API takes a request as one NATS message, and NATS carries at most 1 MiB in one by default";

/// How much of a refused body is still read, and dropped: a client that is still sending when
/// the 413 is ready would otherwise see its connection reset and never read the answer (a
/// browser says "failed to fetch"). Past this much or this long, the connection is dropped.
const DRAIN_BYTES: usize = 64 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// A request body, read whole, of at most [`MAX_BODY_BYTES`]. A longer one is a 413 that names
/// the limit, and nothing of it is sent on NATS or kept: refused on the head alone when the
/// request says its length, or as soon as it passes the limit when it is chunked. (A client
/// waiting on `Expect: 100-continue`, as curl does for large uploads, never sends it at all.)
struct Body(Vec<u8>);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = Response;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Response> {
        let headers = request.headers();
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let waits = headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let refused = |size| too_large(size, MAX_BODY_BYTES, BODY_LIMIT_REASON).into_response();
        let mut stream = request.into_body().into_data_stream();
        if let Some(size) = declared.filter(|&n| n > MAX_BODY_BYTES) {
            if !waits {
                drain(&mut stream).await;
            }
            return Err(refused(Some(size)));
        }
        let mut body = Vec::with_capacity(declared.unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                Unanswered {
                    status: StatusCode::BAD_REQUEST,
                    message: format!("cannot read the request body: {e}"),
                }
                .into_response()
            })?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                drain(&mut stream).await;
                return Err(refused(None));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Body(body))
    }
}

/// Reads and drops the rest of a refused body, up to [`DRAIN_BYTES`] or [`DRAIN_TIME`].
async fn drain(stream: &mut axum::body::BodyDataStream) {
    let mut read = 0;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

async fn lattice(State(g): State<Shared>) -> Response {
    Json(serde_json::json!({ "lattice": g.lattice() })).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `?offset=N&limit=M` asks for a page (apps sorted by name; a page shorter than `limit` is
/// the last); without them, every app, or a 413 when they outgrow one NATS message.
async fn list_apps(State(g): State<Shared>, Query(page): Query<ListModelsRequest>) -> Response {
    let body = if page.offset == 0 && page.limit.is_none() {
        Vec::new()
    } else {
        json_body(&page)
    };
    g.forward(g.api().list(), body).await
}

/// The body is the manifest, YAML or JSON, sent to the controller as it is.
async fn put_app(State(g): State<Shared>, Body(body): Body) -> Response {
    g.forward(g.api().put(), body).await
}

async fn validate(State(g): State<Shared>, Body(body): Body) -> Response {
    g.forward(g.api().validate(), body).await
}

async fn get_app(
    State(g): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Response {
    let body = json_body(&GetModelRequest { version: q.version });
    g.forward(g.api().get(&name), body).await
}

async fn delete_app(
    State(g): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Response {
    let body = json_body(&DeleteModelRequest { version: q.version });
    g.forward(g.api().del(&name), body).await
}

async fn versions(State(g): State<Shared>, Path(name): Path<String>) -> Response {
    g.forward(g.api().versions(&name), Vec::new()).await
}

async fn status(State(g): State<Shared>, Path(name): Path<String>) -> Response {
    g.forward(g.api().status(&name), Vec::new()).await
}

async fn history(State(g): State<Shared>, Path(name): Path<String>) -> Response {
    g.forward(g.api().history(&name), Vec::new()).await
}

async fn plan(
    State(g): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Response {
    let body = json_body(&PlanRequest { version: q.version });
    g.forward(g.api().plan(&name), body).await
}

async fn deploy(State(g): State<Shared>, Path(name): Path<String>, Body(body): Body) -> Response {
    match checked_body::<DeployModelRequest>(&body, "deploy (`{\"version\": \"v2\"}` or empty)") {
        Ok(body) => g.forward(g.api().deploy(&name), body).await,
        Err(refused) => refused.into_response(),
    }
}

async fn undeploy(State(g): State<Shared>, Path(name): Path<String>, Body(body): Body) -> Response {
    match checked_body::<UndeployModelRequest>(
        &body,
        "undeploy (`{\"non_destructive\": true}` or empty)",
    ) {
        Ok(body) => g.forward(g.api().undeploy(&name), body).await,
        Err(refused) => refused.into_response(),
    }
}

async fn rollback(State(g): State<Shared>, Path(name): Path<String>) -> Response {
    g.forward(g.api().rollback(&name), Vec::new()).await
}

async fn rollout_get(State(g): State<Shared>, Path(name): Path<String>) -> Response {
    g.forward(g.api().rollout(RolloutAction::Get, &name), Vec::new())
        .await
}

async fn rollout_promote(State(g): State<Shared>, Path(name): Path<String>) -> Response {
    g.forward(g.api().rollout(RolloutAction::Promote, &name), Vec::new())
        .await
}

async fn rollout_abort(
    State(g): State<Shared>,
    Path(name): Path<String>,
    Body(body): Body,
) -> Response {
    match checked_body::<RolloutRequest>(&body, "rollout abort (`{\"reason\": \"…\"}` or empty)")
    {
        Ok(body) => {
            g.forward(g.api().rollout(RolloutAction::Abort, &name), body)
                .await
        }
        Err(refused) => refused.into_response(),
    }
}

async fn hosts(State(g): State<Shared>) -> Response {
    match g.hosts().await {
        Ok(hosts) => Json(hosts).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Default, Deserialize)]
struct HistoryQuery {
    #[serde(default)]
    history: bool,
}

async fn vitals(State(g): State<Shared>, Query(q): Query<HistoryQuery>) -> Response {
    let body = json_body(&HostsRequest { history: q.history });
    g.forward(g.api().hosts(), body).await
}

async fn inventory(State(g): State<Shared>, Path(host): Path<String>) -> Response {
    match g.inventory(&host).await {
        Ok(inventory) => Json(inventory).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn links(State(g): State<Shared>) -> Response {
    match g
        .ctl_request::<Vec<Link>>(g.ctl().link_get(), "list its links")
        .await
    {
        Ok(links) => Json(links.unwrap_or_default()).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn config_names(State(g): State<Shared>) -> Response {
    match g.config_names().await {
        Ok(names) => Json(names).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn config(State(g): State<Shared>, Path(name): Path<String>) -> Response {
    match g.config(&name).await {
        Ok(values) => Json(values).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn plugins(State(g): State<Shared>) -> Response {
    g.forward(g.api().plugin_list(), Vec::new()).await
}
