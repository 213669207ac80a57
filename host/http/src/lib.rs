//! The HTTP API and web dashboard of one lattice.
//!
//! The HTTP API is a gateway over the controller's NATS API: every request becomes one request
//! on the same subject `trellis app …` uses, and the controller's JSON answer is the response
//! body as it came, so both APIs have one implementation and the same messages. Only the HTTP
//! status is added, read from the answer's `result` field ([`gateway`]). The dashboard is plain
//! HTML, CSS and JavaScript compiled into the binary ([`dashboard`]); it uses the same API.
//!
//! This crate knows NATS subjects, not the controller's insides: it runs beside a controller,
//! in the same process (`trellis controller --http`, `trellis up`) or anywhere that reaches
//! the lattice's NATS.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

pub mod dashboard;
mod events;
pub mod gateway;
pub mod routes;

pub use gateway::Gateway;

/// The environment variable `trellis` reads the API token from when no flag gives it.
pub const TOKEN_ENV: &str = "TRELLIS_HTTP_TOKEN";

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub address: SocketAddr,
    /// Requests to `/api/…` must carry `Authorization: Bearer <token>`. Required unless the
    /// address is a loopback one: anyone who reaches the API can deploy to the lattice.
    pub token: Option<String>,
    pub lattice: String,
    /// The controllers' API prefix (`trellis controller --api-prefix`); `None`: wadm's default.
    pub api_prefix: Option<String>,
}

/// Refuses to serve on an address other machines can reach without a token (an empty token
/// is none): anyone who reaches the API can deploy to the lattice. Callers check before they
/// start anything else, so the refusal comes first.
pub fn check_address(
    address: SocketAddr,
    token: Option<&str>,
    lattice: &str,
) -> anyhow::Result<()> {
    if token.is_none_or(str::is_empty) && !address.ip().is_loopback() {
        bail!(
            "refusing to serve the HTTP API on {address} without a token: anyone who reaches it could deploy to lattice `{lattice}`; \
             pass --http-token (or set {TOKEN_ENV}), or serve on a loopback address such as 127.0.0.1:{}",
            address.port()
        );
    }
    Ok(())
}

/// A running HTTP server; stopped by [`HttpServer::stop`] or on drop.
pub struct HttpServer {
    address: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl HttpServer {
    /// Binds the address and serves the API and dashboard of `config.lattice` through `client`.
    /// Refuses a non-loopback address without a token.
    pub async fn start(config: HttpConfig, client: async_nats::Client) -> anyhow::Result<Self> {
        check_address(config.address, config.token.as_deref(), &config.lattice)?;
        let token = config.token.filter(|t| !t.is_empty());
        let listener = tokio::net::TcpListener::bind(config.address)
            .await
            .with_context(|| {
                format!(
                    "cannot serve the HTTP API on {}: is another program using that port? pass another address with --http",
                    config.address
                )
            })?;
        let address = listener.local_addr()?;
        let prefix = config
            .api_prefix
            .as_deref()
            .unwrap_or(trellis_lattice::api::DEFAULT_API_PREFIX);
        let router = router(Gateway::new(client, &config.lattice, prefix), token);
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(%address, "the HTTP API stopped: {e}");
            }
        });
        tracing::info!(%address, lattice = %config.lattice, "serving the HTTP API and dashboard");
        Ok(Self {
            address,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The dashboard's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }

    /// Stops accepting connections and lets requests in progress finish, for two seconds at
    /// most: open event streams never finish by themselves, and a browser tab left open must
    /// not hold up a shutdown.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(std::time::Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The whole application: the API under `/api/v1` (behind the token, when there is one) and
/// the dashboard at `/`.
pub fn router(gateway: Gateway, token: Option<String>) -> Router {
    let gateway = Arc::new(gateway);
    let token = Arc::new(token);
    let api = routes::api_router()
        .layer(axum::middleware::from_fn_with_state(
            token.clone(),
            require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(token, same_origin))
        .with_state(gateway);
    Router::new()
        .merge(api)
        .merge(dashboard::router())
        .fallback(not_found)
}

/// `401` unless the request carries the token (when one is set). Compared in constant time so
/// the answer's timing does not tell how much of a guess was right.
async fn require_token(
    State(token): State<Arc<Option<String>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token.as_deref() else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => {
            next.run(request).await
        }
        Some(_) => error(
            StatusCode::UNAUTHORIZED,
            "the token in `Authorization: Bearer …` is not this server's; use the one given to --http-token",
        ),
        None => error(
            StatusCode::UNAUTHORIZED,
            "this HTTP API needs a token: send `Authorization: Bearer <token>` with the token given to --http-token",
        ),
    }
}

/// What keeps other web sites out, with or without a token:
///
/// - A request that changes something (not GET) and carries an `Origin` must come from the
///   dashboard's own origin. Browsers send `Origin` with every cross-site POST, and a "simple"
///   cross-site POST (a form, or `text/plain`) reaches the server without a CORS preflight, so
///   without this check any page open in the user's browser could deploy to a local lattice.
/// - Without a token, the `Host` must be a loopback name: a site that re-binds its own DNS name
///   to 127.0.0.1 gets its own name in `Host`, and may not read the API through it.
async fn same_origin(
    State(token): State<Arc<Option<String>>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if token.is_none() && !is_loopback_host(&host) {
        return error(
            StatusCode::FORBIDDEN,
            &format!(
                "Host `{host}` is not a loopback name: without a token this API answers only requests to localhost or a loopback address"
            ),
        );
    }
    let changes = !matches!(request.method().as_str(), "GET" | "HEAD" | "OPTIONS");
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        let own = [format!("http://{host}"), format!("https://{host}")];
        if changes && !own.iter().any(|o| o == origin) {
            return error(
                StatusCode::FORBIDDEN,
                &format!(
                    "a request from the web page at {origin} may not change this lattice; use the dashboard at http://{host}/, trellis or curl"
                ),
            );
        }
    }
    next.run(request).await
}

/// `localhost`, `127.x.x.x` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found(request: Request) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!(
            "no such endpoint: {} {}; GET /api/v1/openapi.json lists them",
            request.method(),
            request.uri().path()
        ),
    )
}

/// A JSON error of the gateway itself, `{"error": message}` (the controller's own refusals keep
/// the controller's shape).
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_told_apart() {
        for host in [
            "localhost",
            "localhost:8800",
            "127.0.0.1:8800",
            "127.1.2.3",
            "[::1]:8800",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            "evil.example:8800",
            "10.0.0.1:8800",
            "localhost.evil.example",
            "[::2]",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
