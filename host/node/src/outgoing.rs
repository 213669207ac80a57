//! A component's outgoing HTTP requests, checked against what its app grants it
//! ([`crate::grants`]) before anything leaves the node.
//!
//! - A request to a lattice name (`http://infer/`) becomes a call to that component over NATS
//!   ([`crate::calls`]), only along a `wasi:http` `outgoing-handler` link from the caller. The
//!   body is capped at what one NATS message carries (413 past it) and the caller's deadline
//!   travels with the call.
//! - Any other request goes out over TCP only to a host `allowed_outbound_hosts` lists. The
//!   host is resolved here, and a destination on this machine or its link (loopback,
//!   link-local, the node's own listeners) needs an entry naming that host exactly. Plain HTTP
//!   then connects to the very address that was checked, so a name that resolves elsewhere a
//!   moment later cannot lead around the check; HTTPS connects by name, and its certificate
//!   check stands in the way of such a switch.
//!
//! A refused request fails in the guest with `HTTP-request-denied` (or
//! `destination-IP-prohibited` for this machine), and the node logs the component and the
//! destination.

use std::future::Future;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use http_body_util::{BodyExt as _, Limited};
use hyper::http::uri::{Authority, Uri};
use tokio::time::Instant;
use tracing::{debug, warn};
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

use crate::body::full_body;
use crate::calls::{self, LatticeCalls};
use crate::environment::ComponentEnv;
use crate::grants::{sensitive_ip, Destination};

type HttpError = wasmtime_wasi_http::Error;
type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(hyper::Response<WasiBody>, IoFuture), HttpError>> + Send>;

/// How long resolving a host name may take.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// The addresses this node's HTTP listeners are bound to, kept by the HTTP server: a component
/// must not reach them through a wildcard grant.
#[derive(Clone, Default)]
pub(crate) struct OwnListeners(Arc<RwLock<Vec<SocketAddr>>>);

impl OwnListeners {
    pub(crate) fn add(&self, address: SocketAddr) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(address);
    }

    pub(crate) fn remove(&self, address: SocketAddr) {
        let mut all = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = all.iter().position(|a| *a == address) {
            all.remove(i);
        }
    }

    /// Whether connecting to `to` reaches one of the listeners.
    fn contains(&self, to: SocketAddr) -> bool {
        let all = self.0.read().unwrap_or_else(PoisonError::into_inner);
        all.iter().any(|listener| {
            listener.port() == to.port()
                && (listener.ip() == to.ip()
                    || (listener.ip().is_unspecified() && is_local(to.ip())))
        })
    }
}

/// Whether `ip` is an address of this machine: binding to it succeeds only then.
fn is_local(ip: IpAddr) -> bool {
    UdpSocket::bind((ip, 0)).is_ok()
}

/// The hooks of one request's store: sends what the component sends, if granted.
pub(crate) struct OutgoingHttp {
    pub(crate) caller: Arc<ComponentEnv>,
    pub(crate) calls: Arc<LatticeCalls>,
    pub(crate) own_listeners: OwnListeners,
    /// The deadline of the request being served; nothing sent may outlive it.
    pub(crate) deadline: Instant,
}

impl WasiHttpHooks for OutgoingHttp {
    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> SendFuture {
        let caller = self.caller.clone();
        let deadline = self.deadline;
        match calls::lattice_name(request.uri()).map(str::to_string) {
            Some(name) => {
                let calls = self.calls.clone();
                Box::new(call_component(caller, calls, deadline, name, request))
            }
            None => {
                let own = self.own_listeners.clone();
                Box::new(send_granted(caller, own, deadline, request, options))
            }
        }
    }
}

/// A call to another component of the lattice, along a link of the caller's.
async fn call_component(
    caller: Arc<ComponentEnv>,
    calls: Arc<LatticeCalls>,
    deadline: Instant,
    name: String,
    request: hyper::Request<WasiBody>,
) -> Result<(hyper::Response<WasiBody>, IoFuture), HttpError> {
    let candidates: Vec<String> = calls::candidate_ids(&name, caller.app.as_deref())
        .into_iter()
        .filter(|id| caller.grants.callees.contains(id))
        .collect();
    if candidates.is_empty() {
        warn!(component_id = %caller.id, callee = %name, "lattice call refused: no wasi:http outgoing-handler link from the caller to it in its app's manifest");
        return Err(HttpError::HttpRequestDenied);
    }
    let (parts, body) = request.into_parts();
    let cap = calls.max_payload();
    let response = match Limited::new(body, cap).collect().await {
        Ok(body) => {
            calls
                .call(&candidates, &caller.id, parts, body.to_bytes(), deadline)
                .await
        }
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let reason = format!(
                "the request body to {name} is larger than a lattice call carries ({cap} bytes, the NATS server's max_payload)"
            );
            warn!(component_id = %caller.id, callee = %name, "{reason}");
            calls::error_response(413, reason)
        }
        Err(e) => {
            debug!(component_id = %caller.id, callee = %name, error = %e, "the request body failed");
            return Err(HttpError::HttpRequestBodySize(None));
        }
    };
    let done: IoFuture = Box::new(async { Ok(()) });
    Ok((response.map(full_body), done))
}

/// A request over TCP to a host the caller is granted.
async fn send_granted(
    caller: Arc<ComponentEnv>,
    own_listeners: OwnListeners,
    deadline: Instant,
    mut request: hyper::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<(hyper::Response<WasiBody>, IoFuture), HttpError> {
    let uri = request.uri().clone();
    let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
    let Some(host) = uri.host() else {
        return Err(HttpError::HttpRequestUriInvalid);
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let to = Destination {
        scheme: &scheme,
        host: &host,
        port,
    };
    if caller.grants.outbound.is_empty() {
        warn!(component_id = %caller.id, destination = %to, "outgoing HTTP refused: the component is granted no hosts (allowed_outbound_hosts in its config)");
        return Err(HttpError::HttpRequestDenied);
    }
    let addresses = resolve(&host, port).await?;
    let sensitive = addresses
        .iter()
        .any(|a| sensitive_ip(a.ip()) || own_listeners.contains(*a));
    if !caller.grants.outbound.allows(to, sensitive) {
        let why = if sensitive {
            "it is this machine, its link or a node listener, which only an entry naming that host grants"
        } else {
            "it is not in allowed_outbound_hosts"
        };
        warn!(component_id = %caller.id, destination = %to, granted = %caller.grants.outbound.as_text(), "outgoing HTTP refused: {why}");
        return Err(if sensitive {
            HttpError::DestinationIpProhibited
        } else {
            HttpError::HttpRequestDenied
        });
    }
    // Plain HTTP goes to the address just checked (the Host header keeps the name).
    if scheme == "http" {
        let checked = addresses[0];
        let authority = Authority::try_from(checked.to_string().as_str())
            .map_err(|_| HttpError::HttpRequestUriInvalid)?;
        let mut parts = uri.into_parts();
        parts.authority = Some(authority);
        *request.uri_mut() =
            Uri::from_parts(parts).map_err(|_| HttpError::HttpRequestUriInvalid)?;
    }
    let options = bounded(options, deadline);
    let (response, io) = wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
    Ok((
        response.map(|body| body.boxed_unsync()),
        Box::new(io) as IoFuture,
    ))
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, HttpError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    match tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Err(_) => Err(HttpError::DnsTimeout),
        Ok(Err(_)) => Err(HttpError::DnsError {
            rcode: None,
            info_code: None,
        }),
        Ok(Ok(addresses)) => {
            let addresses: Vec<SocketAddr> = addresses.collect();
            if addresses.is_empty() {
                Err(HttpError::DestinationNotFound)
            } else {
                Ok(addresses)
            }
        }
    }
}

/// The guest's timeouts, none past the request's deadline.
fn bounded(options: Option<RequestOptions>, deadline: Instant) -> RequestOptions {
    let left = deadline.saturating_duration_since(Instant::now());
    let cap = |d: Option<Duration>| Some(d.map_or(left, |d| d.min(left)));
    let options = options.unwrap_or_default();
    RequestOptions {
        connect_timeout: cap(options.connect_timeout),
        first_byte_timeout: cap(options.first_byte_timeout),
        between_bytes_timeout: cap(options.between_bytes_timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_on_any_address_cover_local_addresses() {
        let own = OwnListeners::default();
        own.add("0.0.0.0:8000".parse().unwrap());
        own.add("10.1.2.3:9000".parse().unwrap());
        assert!(own.contains("127.0.0.1:8000".parse().unwrap()));
        assert!(!own.contains("127.0.0.1:8001".parse().unwrap()));
        assert!(own.contains("10.1.2.3:9000".parse().unwrap()));
        // Not an address of this machine (TEST-NET-3).
        assert!(!own.contains("203.0.113.9:8000".parse().unwrap()));
        own.remove("0.0.0.0:8000".parse().unwrap());
        assert!(!own.contains("127.0.0.1:8000".parse().unwrap()));
    }

    #[test]
    fn no_timeout_outlives_the_deadline() {
        let deadline = Instant::now() + Duration::from_secs(2);
        let options = bounded(
            Some(RequestOptions {
                connect_timeout: Some(Duration::from_secs(600)),
                first_byte_timeout: Some(Duration::from_millis(100)),
                between_bytes_timeout: None,
            }),
            deadline,
        );
        assert!(options.connect_timeout.unwrap() <= Duration::from_secs(2));
        assert_eq!(options.first_byte_timeout, Some(Duration::from_millis(100)));
        assert!(options.between_bytes_timeout.unwrap() <= Duration::from_secs(2));
    }
}
