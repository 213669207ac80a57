//! The built-in HTTP server provider: one listener per address its HTTP links ask for, routing
//! every request to a link's target component: on this node if it runs here, else over NATS to
//! a node that runs it (see [`crate::calls`]), so the provider and the component need not
//! share a node.
//!
//! Links that ask for the same address share its listener and split its requests by the
//! `weight` in their config (the share a rollout gives each version of an app, see the
//! controller's `rollout::shape`): a link coming or going never closes the socket while
//! another still wants it. A request goes to the target its weight picks, and to the others
//! in turn when no node runs that one.
//!
//! Each listener bounds what a client can hold: open connections (past the cap a new one is
//! closed at once), the time to send a request's headers, and the request body (413 past the
//! cap; see [`crate::request`] for requests served here).
//!
//! A request for a component that runs on no node is held, up to `hold_for_instance`, while
//! an instance starts (an app scaled to zero: [`crate::waiting`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Its share of the address's requests, relative to the other links' there
    /// ([`DEFAULT_WEIGHT`] unless the link's config says `weight`).
    pub(crate) weight: u32,
}

/// The weight of a link whose config gives none: links sharing an address without weights
/// share its requests evenly.
pub(crate) const DEFAULT_WEIGHT: u32 = 100;

/// The components behind one listener and their weights, in link-key order.
#[derive(Debug, Default)]
struct Targets(Vec<(String, u32)>);

impl Targets {
    fn of(routes: &[Route]) -> Self {
        Self(
            routes
                .iter()
                .map(|r| (r.target.clone(), r.weight))
                .collect(),
        )
    }

    /// The targets to try for request number `n`: the one the weights pick first, then the
    /// others, heaviest first. Picks scatter `n` so that a small share is spread over the
    /// requests rather than bunched.
    fn order(&self, n: u64) -> Vec<String> {
        let all_zero = self.0.iter().all(|(_, w)| *w == 0);
        let weight = |w: u32| u64::from(if all_zero { 1 } else { w });
        let total: u64 = self.0.iter().map(|(_, w)| weight(*w)).sum();
        if total == 0 {
            return Vec::new();
        }
        // `n ↦ n·step mod total` is a permutation of each run of `total` requests (the step
        // is coprime with it), so every run gives each target exactly its weight.
        let step = [7919u64, 7907, 7901]
            .into_iter()
            .find(|p| !total.is_multiple_of(*p))
            .unwrap_or(1);
        let mut point = (n % total) * (step % total) % total;
        let mut chosen = 0;
        for (i, (_, w)) in self.0.iter().enumerate() {
            if point < weight(*w) {
                chosen = i;
                break;
            }
            point -= weight(*w);
        }
        let mut rest: Vec<&(String, u32)> = self
            .0
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != chosen)
            .map(|(_, t)| t)
            .collect();
        rest.sort_by_key(|(_, w)| std::cmp::Reverse(*w));
        std::iter::once(self.0[chosen].0.clone())
            .chain(rest.into_iter().map(|(t, _)| t.clone()))
            .collect()
    }
}

/// What a reconciliation did that the lattice should hear about.
#[derive(Debug)]
pub(crate) enum ListenerChange {
    Failed { route: Route, error: String },
    Recovered { route: Route },
}

/// The HTTP listeners of this node, by address.
pub(crate) struct HttpServer {
    host_id: String,
    components: Components,
    services: Arc<Services>,
    listeners: tokio::sync::Mutex<BTreeMap<String, Listener>>,
    /// Requests held for a component that runs nowhere yet.
    pub(crate) waiting: Arc<Waiting>,
}

struct Listener {
    /// The links served here, in link-key order.
    routes: Vec<Route>,
    /// Shared with the serving task so new targets or weights need no new socket.
    targets: Arc<RwLock<Targets>>,
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
    /// retries failed binds and gives existing ones their new targets and weights.
    pub(crate) async fn apply(&self, routes: Vec<Route>) -> Vec<ListenerChange> {
        let mut listeners = self.listeners.lock().await;
        let mut wanted: BTreeMap<String, Vec<Route>> = BTreeMap::new();
        for route in routes {
            wanted.entry(route.address.clone()).or_default().push(route);
        }
        for routes in wanted.values_mut() {
            routes.sort_by(|a, b| a.link_key.cmp(&b.link_key));
        }

        let stale: Vec<String> = listeners
            .keys()
            .filter(|address| !wanted.contains_key(*address))
            .cloned()
            .collect();
        for address in stale {
            if let Some(listener) = listeners.remove(&address) {
                info!(host_id = %self.host_id, %address, "closing HTTP listener");
                listener.close().await;
            }
        }

        let mut changes = Vec::new();
        for (address, routes) in wanted {
            let first = routes[0].clone();
            if let Some(listener) = listeners.get_mut(&address) {
                if listener.routes != routes {
                    let targets = Targets::of(&routes);
                    info!(host_id = %self.host_id, %address, targets = ?targets.0, "HTTP requests now go to new components or weights");
                    *listener
                        .targets
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = targets;
                    listener.routes = routes.clone();
                }
                if matches!(listener.state, ListenerState::Serving(_)) {
                    continue;
                }
            }
            let was_failed = listeners.contains_key(&address);
            let targets = Arc::new(RwLock::new(Targets::of(&routes)));
            let state = match TcpListener::bind(&address).await {
                Ok(socket) => {
                    info!(host_id = %self.host_id, link = %first.link_key, %address, component_id = %first.target, "serving HTTP");
                    if was_failed {
                        changes.push(ListenerChange::Recovered {
                            route: first.clone(),
                        });
                    }
                    ListenerState::Serving(self.serve(socket, targets.clone()))
                }
                Err(e) => {
                    let error = format!("cannot listen on {address}: {e}");
                    let repeated = matches!(
                        listeners.get(&address).map(|l| &l.state),
                        Some(ListenerState::Failed(previous)) if *previous == error
                    );
                    if !repeated {
                        error!(host_id = %self.host_id, link = %first.link_key, %address, error = %e, "HTTP listener failed; other routes keep serving");
                        changes.push(ListenerChange::Failed {
                            route: first.clone(),
                            error: error.clone(),
                        });
                    }
                    ListenerState::Failed(error)
                }
            };
            listeners.insert(
                address,
                Listener {
                    routes,
                    targets,
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

    fn serve(&self, socket: TcpListener, targets: Arc<RwLock<Targets>>) -> Serving {
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
        let picks = Arc::new(AtomicU64::new(0));
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
                let targets = targets.clone();
                let waiting = waiting.clone();
                let picks = picks.clone();
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let components = components.clone();
                    let services = services.clone();
                    let waiting = waiting.clone();
                    let order = targets
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                        .order(picks.fetch_add(1, Ordering::Relaxed));
                    async move {
                        let local = order.first().and_then(|first| components.get(first));
                        let response = match local {
                            Some(component) => component.serve_http(request, None).await,
                            None => route_over_nats(&services, &waiting, order, request).await,
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

/// Sends a request for a component that does not run here to a node that runs it (the first
/// of `targets` that any node runs), with the node's default deadline and the body capped at
/// what both the node and a NATS message take. When no node runs any, holds the request while
/// the first starts (see [`crate::waiting`]).
async fn route_over_nats(
    services: &Services,
    waiting: &Waiting,
    targets: Vec<String>,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<HyperOutgoingBody> {
    let target = targets.join(" or ");
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
                    &targets,
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
                        if let (None, Some(first)) = (&held, targets.first()) {
                            debug!(component_id = %first, "holding a request until an instance runs");
                            held = Some(waiting.hold(first));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(weights: &[(&str, u32)]) -> Targets {
        Targets(weights.iter().map(|(t, w)| (t.to_string(), *w)).collect())
    }

    fn firsts(t: &Targets, requests: u64) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for n in 0..requests {
            *counts.entry(t.order(n)[0].clone()).or_default() += 1;
        }
        counts
    }

    #[test]
    fn requests_split_by_weight_and_spread_over_time() {
        let t = targets(&[("v1", 80), ("v2", 20)]);
        let counts = firsts(&t, 1000);
        assert_eq!(counts["v2"], 200, "{counts:?}");
        // A fifth of every hundred, not the same twenty in a row.
        let in_first_ten = (0..10).filter(|n| t.order(*n)[0] == "v2").count();
        assert!((1..=5).contains(&in_first_ten), "{in_first_ten}");
    }

    #[test]
    fn the_others_follow_as_fallbacks_and_zero_weight_is_never_picked_first() {
        let t = targets(&[("v1", 0), ("v2", 100)]);
        let counts = firsts(&t, 100);
        assert_eq!(counts.get("v1"), None);
        assert_eq!(t.order(7), vec!["v2", "v1"]);
        // All at zero: an even split rather than nothing.
        let counts = firsts(&targets(&[("a", 0), ("b", 0)]), 100);
        assert_eq!((counts["a"], counts["b"]), (50, 50));
        assert_eq!(targets(&[("only", 100)]).order(3), vec!["only"]);
    }
}
