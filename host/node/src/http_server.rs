//! The built-in HTTP server provider: one listener per HTTP link, routing every request to the
//! link's target component: on this node if it runs here, else over NATS to a node that runs it
//! (see [`crate::calls`]), so the provider and the component need not share a node.
//!
//! Each listener bounds what a client can hold: open connections (past the cap a new one is
//! closed at once), the time to send a request's headers, and the request body (413 past the
//! cap; see [`crate::request`] for requests served here).
//!
//! A request for a component that runs on no node is held, up to `hold_for_instance`, while
//! an instance starts (an app scaled to zero: [`crate::waiting`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper_util::rt::TokioTimer;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::body::{full_body, text_response};
use crate::waiting::Waiting;

/// Between two looks for an instance of a component a held request waits for: from 10 ms,
/// doubling to 100 ms. A first look soon after the controller heard of the request, and
/// later ones cheap (each is one NATS request without responders).
const HOLD_FIRST_PAUSE: Duration = Duration::from_millis(10);
const HOLD_LAST_PAUSE: Duration = Duration::from_millis(100);
use crate::component::Components;
use crate::guest::Services;

/// Where one HTTP link wants requests served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) link_key: String,
    pub(crate) provider_id: String,
    /// `host:port` to bind, e.g. `0.0.0.0:8000`.
    pub(crate) address: String,
    /// The component that handles the requests.
    pub(crate) target: String,
}

/// What a reconciliation did that the lattice should hear about.
#[derive(Debug)]
pub(crate) enum ListenerChange {
    Failed { route: Route, error: String },
    Recovered { route: Route },
}

/// The HTTP listeners of this node, by link key.
pub(crate) struct HttpServer {
    host_id: String,
    components: Components,
    services: Arc<Services>,
    listeners: tokio::sync::Mutex<BTreeMap<String, Listener>>,
    /// Requests held for a component that runs nowhere yet.
    pub(crate) waiting: Arc<Waiting>,
}

struct Listener {
    route: Route,
    /// Shared with the serving task so a new target needs no new socket.
    target: Arc<RwLock<String>>,
    state: ListenerState,
}

enum ListenerState {
    Serving(Serving),
    /// Could not bind; retried on the next reconciliation.
    Failed(String),
}

struct Serving {
    shutdown: oneshot::Sender<()>,
    /// Fires once the listening socket is closed (before in-flight requests have finished).
    closed: oneshot::Receiver<()>,
    task: JoinHandle<()>,
}

impl HttpServer {
    pub(crate) fn new(host_id: String, components: Components, services: Arc<Services>) -> Self {
        Self {
            host_id,
            components,
            services,
            listeners: tokio::sync::Mutex::default(),
            waiting: Arc::default(),
        }
    }

    /// Makes the listeners match `routes`: closes those no route wants, opens new ones,
    /// retries failed binds and points existing ones at new targets.
    pub(crate) async fn apply(&self, routes: Vec<Route>) -> Vec<ListenerChange> {
        let mut listeners = self.listeners.lock().await;
        let wanted: BTreeMap<String, Route> = routes
            .into_iter()
            .map(|route| (route.link_key.clone(), route))
            .collect();

        let stale: Vec<String> = listeners
            .iter()
            .filter(|(key, listener)| {
                wanted
                    .get(*key)
                    .is_none_or(|route| route.address != listener.route.address)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            if let Some(listener) = listeners.remove(&key) {
                info!(host_id = %self.host_id, link = %key, address = %listener.route.address, "closing HTTP listener");
                listener.close().await;
            }
        }

        let mut changes = Vec::new();
        for (key, route) in wanted {
            if let Some(listener) = listeners.get_mut(&key) {
                if listener.route.target != route.target {
                    info!(host_id = %self.host_id, link = %key, target = %route.target, "HTTP route now goes to a new component");
                    *listener
                        .target
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = route.target.clone();
                    listener.route.target = route.target.clone();
                }
                if matches!(listener.state, ListenerState::Serving(_)) {
                    continue;
                }
            }
            let was_failed = listeners.contains_key(&key);
            let target = Arc::new(RwLock::new(route.target.clone()));
            let state = match TcpListener::bind(&route.address).await {
                Ok(socket) => {
                    info!(host_id = %self.host_id, link = %key, address = %route.address, component_id = %route.target, "serving HTTP");
                    if was_failed {
                        changes.push(ListenerChange::Recovered {
                            route: route.clone(),
                        });
                    }
                    ListenerState::Serving(self.serve(socket, target.clone()))
                }
                Err(e) => {
                    let error = format!("cannot listen on {}: {e}", route.address);
                    let repeated = matches!(
                        listeners.get(&key).map(|l| &l.state),
                        Some(ListenerState::Failed(previous)) if *previous == error
                    );
                    if !repeated {
                        error!(host_id = %self.host_id, link = %key, address = %route.address, error = %e, "HTTP listener failed; other routes keep serving");
                        changes.push(ListenerChange::Failed {
                            route: route.clone(),
                            error: error.clone(),
                        });
                    }
                    ListenerState::Failed(error)
                }
            };
            listeners.insert(
                key,
                Listener {
                    route,
                    target,
                    state,
                },
            );
        }
        changes
    }

    pub(crate) async fn has_failures(&self) -> bool {
        self.listeners
            .lock()
            .await
            .values()
            .any(|l| matches!(l.state, ListenerState::Failed(_)))
    }

    /// Closes every listener at once, without finishing requests (a node dropped without
    /// `stop`). A reconciliation holding the lock at that moment keeps its listeners.
    pub(crate) fn abort_all(&self) {
        if let Ok(mut listeners) = self.listeners.try_lock() {
            for (_, listener) in std::mem::take(&mut *listeners) {
                if let ListenerState::Serving(serving) = listener.state {
                    serving.task.abort();
                }
            }
        }
    }

    /// Closes every listener and waits up to `drain` for in-flight requests to finish.
    pub(crate) async fn shutdown(&self, drain: Duration) {
        let listeners = std::mem::take(&mut *self.listeners.lock().await);
        let mut tasks = Vec::new();
        for listener in listeners.into_values() {
            if let ListenerState::Serving(serving) = listener.state {
                let _ = serving.shutdown.send(());
                tasks.push(serving.task);
            }
        }
        if tokio::time::timeout(drain, futures::future::join_all(tasks))
            .await
            .is_err()
        {
            warn!(host_id = %self.host_id, "HTTP requests still in flight after {drain:?}; closing them");
        }
    }

    fn serve(&self, socket: TcpListener, target: Arc<RwLock<String>>) -> Serving {
        let (shutdown, mut shutdown_rx) = oneshot::channel();
        let (closed_tx, closed) = oneshot::channel();
        let components = self.components.clone();
        let services = self.services.clone();
        let host_id = self.host_id.clone();
        let limits = self.services.limits.clone();
        let connections = Arc::new(Semaphore::new(limits.max_connections));
        let own = self.services.own_listeners.clone();
        let waiting = self.waiting.clone();
        let bound = socket.local_addr().ok();
        if let Some(address) = bound {
            own.add(address);
        }
        let task = tokio::spawn(async move {
            let graceful = GracefulShutdown::new();
            loop {
                let (stream, peer) = tokio::select! {
                    _ = &mut shutdown_rx => break,
                    accepted = socket.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            // Out of file descriptors and the like: back off instead of spinning.
                            warn!(host_id = %host_id, error = %e, "cannot accept an HTTP connection");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let Ok(connection_slot) = connections.clone().try_acquire_owned() else {
                    warn!(host_id = %host_id, %peer, limit = limits.max_connections, "HTTP connection refused: the listener has as many open connections as it accepts (max connections)");
                    drop(stream);
                    continue;
                };
                let components = components.clone();
                let services = services.clone();
                let target = target.clone();
                let waiting = waiting.clone();
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let components = components.clone();
                    let services = services.clone();
                    let waiting = waiting.clone();
                    let target = target
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone();
                    async move {
                        let response = match components.get(&target) {
                            Some(component) => component.serve_http(request, None).await,
                            None => route_over_nats(&services, &waiting, target, request).await,
                        };
                        Ok::<_, Infallible>(response)
                    }
                });
                let connection = http1::Builder::new()
                    .keep_alive(true)
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_read_timeout)
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _slot = connection_slot;
                    if let Err(e) = connection.await {
                        debug!(%peer, error = %e, "HTTP connection ended with an error");
                    }
                });
            }
            drop(socket);
            if let Some(address) = bound {
                own.remove(address);
            }
            let _ = closed_tx.send(());
            graceful.shutdown().await;
        });
        Serving {
            shutdown,
            closed,
            task,
        }
    }
}

/// Sends a request for a component that does not run here to a node that runs it, with the
/// node's default deadline and the body capped at what both the node and a NATS message take.
/// When no node runs it, holds the request while one starts (see [`crate::waiting`]).
async fn route_over_nats(
    services: &Services,
    waiting: &Waiting,
    target: String,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<HyperOutgoingBody> {
    let (parts, body) = request.into_parts();
    let node_cap = usize::try_from(services.limits.max_request_body).unwrap_or(usize::MAX);
    let cap = node_cap.min(services.calls.max_payload());
    match Limited::new(body, cap).collect().await {
        Ok(body) => {
            let body = body.to_bytes();
            let hold = services.limits.hold_for_instance;
            let held_until = tokio::time::Instant::now() + hold;
            let mut held = None;
            let mut pause = HOLD_FIRST_PAUSE;
            loop {
                let deadline = tokio::time::Instant::now() + services.limits.request_timeout;
                let call = services.calls.try_call(
                    std::slice::from_ref(&target),
                    "http-server",
                    parts.clone(),
                    body.clone(),
                    deadline,
                );
                match call.await {
                    Ok(response) => return response.map(full_body),
                    Err(reason) if tokio::time::Instant::now() >= held_until => {
                        let waited = if hold.is_zero() {
                            String::new()
                        } else {
                            format!(" (held the request {hold:?} for an instance to start; an autoscaler with min_instances 0 starts one when a request waits)")
                        };
                        return text_response(503, format!("{reason}{waited}"));
                    }
                    Err(_) => {
                        if held.is_none() {
                            debug!(component_id = %target, "holding a request until an instance runs");
                            held = Some(waiting.hold(&target));
                        }
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(HOLD_LAST_PAUSE);
                    }
                }
            }
        }
        Err(e) if e.is::<LengthLimitError>() => text_response(
            413,
            format!("the request body for component {target} is larger than this node sends to another ({cap} bytes: the smaller of max request body and the NATS server's max_payload)"),
        ),
        Err(e) => text_response(400, format!("cannot read the request body: {e}")),
    }
}

impl Listener {
    /// Stops accepting and returns once the socket is closed, so its address can be bound
    /// again at once; requests in flight finish in the background.
    async fn close(self) {
        if let ListenerState::Serving(serving) = self.state {
            let _ = serving.shutdown.send(());
            let _ = serving.closed.await;
        }
    }
}
