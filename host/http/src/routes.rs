//! The endpoints under `/api/v1`, each a thin translation of an HTTP request into one request
//! on the controller's NATS API (or the lattice's control interface).
//!
//! [`endpoints`] is the single list the router is built from; a test holds it against the
//! OpenAPI document, both ways, so neither can drift from the other.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use trellis_lattice::api::{
    DeleteModelRequest, DeployModelRequest, GetModelRequest, PlanRequest, UndeployModelRequest,
};
use trellis_lattice::ctl::Link;

use crate::events;
use crate::gateway::{Gateway, Unanswered};

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
        at("get", "/api/v1/hosts", on(M::GET, hosts)),
        at("get", "/api/v1/hosts/{host}", on(M::GET, inventory)),
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
fn checked_body<T: DeserializeOwned>(body: &Bytes, what: &str) -> Result<Vec<u8>, Unanswered> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(b"{}".to_vec());
    }
    serde_json::from_slice::<T>(body).map_err(|e| Unanswered {
        status: StatusCode::BAD_REQUEST,
        message: format!("the body of {what} is not valid: {e}"),
    })?;
    Ok(body.to_vec())
}

async fn lattice(State(g): State<Shared>) -> Response {
    Json(serde_json::json!({ "lattice": g.lattice() })).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn list_apps(State(g): State<Shared>) -> Response {
    g.forward(g.api().list(), Vec::new()).await
}

/// The body is the manifest, YAML or JSON, sent to the controller as it is.
async fn put_app(State(g): State<Shared>, body: Bytes) -> Response {
    g.forward(g.api().put(), body.to_vec()).await
}

async fn validate(State(g): State<Shared>, body: Bytes) -> Response {
    g.forward(g.api().validate(), body.to_vec()).await
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

async fn deploy(State(g): State<Shared>, Path(name): Path<String>, body: Bytes) -> Response {
    match checked_body::<DeployModelRequest>(&body, "deploy (`{\"version\": \"v2\"}` or empty)") {
        Ok(body) => g.forward(g.api().deploy(&name), body).await,
        Err(refused) => refused.into_response(),
    }
}

async fn undeploy(State(g): State<Shared>, Path(name): Path<String>, body: Bytes) -> Response {
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

async fn hosts(State(g): State<Shared>) -> Response {
    match g.hosts().await {
        Ok(hosts) => Json(hosts).into_response(),
        Err(e) => e.into_response(),
    }
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
