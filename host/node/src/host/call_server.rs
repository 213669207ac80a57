//! The lattice calls to the components running here ([`crate::calls`] has the protocol).
//!
//! For each component this node runs, a task takes the calls NATS hands it as one member of
//! the component's queue group, runs each through the component's `wasi:http/incoming-handler`
//! as if it had come from the HTTP server, and answers. Leaving the group on scale-down or
//! stop drains it: calls already handed to this node are answered (or refused, so that the
//! caller sends them elsewhere), none is lost.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Full};
use hyper::http::{self, HeaderName, HeaderValue, Method, Uri};
use tracing::{debug, warn, Instrument as _};

use super::Host;
use crate::body::full_body;
use crate::calls::{
    self, copy_headers, error_response, CALLER_HEADER, DEADLINE_HEADER, METHOD_HEADER, PATH_HEADER,
    REFUSED_HEADER, STATUS_HEADER,
};
use crate::component::Components;

impl Host {
    /// Joins the queue group of calls to `component_id` (once), and returns once the server
    /// has the subscription: a component is announced as running (`component_scaled`) only when
    /// calls to it from other nodes reach it.
    pub(super) async fn take_calls(&self, component_id: &str) {
        let taking = self
            .call_takers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(component_id)
            .is_some_and(|t| !t.task.is_finished());
        if taking {
            return;
        }
        let Some(subject) = calls::call_subject(&self.lattice, component_id) else {
            warn!(host_id = %self.id, component_id, "component id does not fit in a NATS subject token; it cannot be called by lattice name");
            return;
        };
        let calls = match self
            .client
            .queue_subscribe(subject.clone(), subject.clone())
            .await
        {
            Ok(calls) => calls,
            Err(e) => {
                warn!(host_id = %self.id, component_id, error = %e, "cannot subscribe to lattice calls; this node will not take calls for the component");
                return;
            }
        };
        if let Err(e) = self.client.flush().await {
            warn!(host_id = %self.id, component_id, error = %e, "cannot confirm the lattice call subscription");
        }
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(serve(
            self.client.clone(),
            calls,
            subject,
            component_id.to_string(),
            self.components.clone(),
            self.calls_in_flight.clone(),
            stop_rx,
        ));
        let mut takers = self
            .call_takers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = takers.insert(component_id.to_string(), CallTaker { stop, task }) {
            // Another scale of the component subscribed meanwhile: one taker is enough.
            old.task.abort();
        }
    }

    /// Leaves the component's call queue group; calls already handed to this node are still
    /// answered (or refused, if the component is gone by then, so the caller tries elsewhere).
    pub(super) fn stop_taking_calls(&self, component_id: &str) {
        if let Some(taker) = self
            .call_takers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(component_id)
        {
            let _ = taker.stop.send(());
        }
    }

    /// Stops taking calls at once, dropping those in hand (a node dropped without `stop`).
    pub(crate) fn abort_call_takers(&self) {
        for (_, taker) in self
            .call_takers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
        {
            taker.task.abort();
        }
    }

    /// Leaves every call queue group, then waits up to `drain` for calls being answered.
    pub(crate) async fn stop_taking_all_calls(&self, drain: Duration) {
        let takers: Vec<_> = self
            .call_takers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        let mut tasks = Vec::with_capacity(takers.len());
        for (_, taker) in takers {
            let _ = taker.stop.send(());
            tasks.push(taker.task);
        }
        // Each task returns once it has unsubscribed and taken every call NATS had handed it;
        // then wait for those calls to be answered.
        let drained = async {
            futures::future::join_all(tasks).await;
            let _ = self.calls_in_flight.write().await;
        };
        if tokio::time::timeout(drain, drained).await.is_err() {
            warn!(host_id = %self.id, "lattice calls still in flight after {drain:?}; dropping them");
        }
    }
}

/// The task taking one component's lattice calls on this node.
pub(super) struct CallTaker {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// Serves calls to one component on this node until the task is aborted (which unsubscribes,
/// taking this node out of the component's queue group).
///
/// On `stop` it leaves the queue group, answers the calls NATS had already sent it, and
/// returns: a stopping node loses no call that reached it.
async fn serve(
    client: async_nats::Client,
    mut calls: async_nats::Subscriber,
    subject: String,
    component_id: String,
    components: Components,
    in_flight: Arc<tokio::sync::RwLock<()>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    debug!(component_id, subject, "taking lattice calls");
    let mut stop = std::pin::pin!(stop);
    let mut stopping = false;
    loop {
        let msg = tokio::select! {
            _ = &mut stop, if !stopping => {
                stopping = true;
                // Drain, not unsubscribe: calls the server sent before it saw us leave still
                // arrive, and are answered; the stream ends after the last of them.
                if let Err(e) = calls.drain().await {
                    warn!(component_id, error = %e, "cannot leave the call queue group");
                    return;
                }
                continue;
            }
            msg = calls.next() => match msg {
                Some(msg) => msg,
                None => break,
            },
        };
        let Some(reply) = msg.reply.clone() else {
            continue;
        };
        let Ok(guard) = in_flight.clone().try_read_owned() else {
            // The node is draining already: the caller sends the call again elsewhere.
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(REFUSED_HEADER, "stopping");
            let _ = client
                .publish_with_headers(reply, headers, Bytes::new())
                .await;
            continue;
        };
        let client = client.clone();
        let components = components.clone();
        let component_id = component_id.clone();
        let span = tracing::debug_span!("lattice_call", component_id = %component_id);
        tokio::spawn(
            async move {
                let _guard = guard;
                let (headers, body) = answer(&client, &components, &component_id, msg).await;
                if let Err(e) = client.publish_with_headers(reply, headers, body).await {
                    warn!(error = %e, "cannot send a lattice call's answer");
                }
            }
            .instrument(span),
        );
    }
}

/// Runs one call through the component and encodes its answer.
async fn answer(
    client: &async_nats::Client,
    components: &Components,
    component_id: &str,
    msg: async_nats::Message,
) -> (async_nats::HeaderMap, Bytes) {
    let response = match (components.get(component_id), decode_request(&msg)) {
        (None, _) => {
            // Scaled down here a moment ago: not run, so the caller may send it again.
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(REFUSED_HEADER, "not running");
            return (headers, Bytes::new());
        }
        (_, Err(reason)) => error_response(400, reason).map(full_body),
        (Some(component), Ok(request)) => component.serve_http(request, budget(&msg)).await,
    };
    let (parts, body) = response.into_parts();
    let cap = client.max_payload();
    let body = match http_body_util::Limited::new(body, cap).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let reason = if e.is::<http_body_util::LengthLimitError>() {
                format!("component {component_id}'s answer is larger than a lattice call carries ({cap} bytes, the NATS server's max_payload)")
            } else {
                format!("component {component_id}'s response body failed: {e:?}")
            };
            return encode_response(
                &error_response(502, reason.clone()).map(|_| ()),
                reason.into(),
            );
        }
    };
    (
        encode_response(&http::Response::from_parts(parts, ()), body.clone()).0,
        body,
    )
}

/// What is left of the caller's deadline, as the call says.
fn budget(msg: &async_nats::Message) -> Option<Duration> {
    let ms = msg
        .headers
        .as_ref()?
        .get(DEADLINE_HEADER)?
        .as_str()
        .parse()
        .ok()?;
    Some(Duration::from_millis(ms))
}

fn encode_response(response: &http::Response<()>, body: Bytes) -> (async_nats::HeaderMap, Bytes) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(STATUS_HEADER, response.status().as_str());
    copy_headers(response.headers(), &mut headers);
    (headers, body)
}

fn decode_request(msg: &async_nats::Message) -> Result<http::Request<Full<Bytes>>, String> {
    let headers = msg
        .headers
        .as_ref()
        .ok_or("a lattice call without headers")?;
    let method = headers
        .get(METHOD_HEADER)
        .and_then(|m| Method::from_bytes(m.as_str().as_bytes()).ok())
        .ok_or("a lattice call without a valid method")?;
    let path = headers.get(PATH_HEADER).map_or("/", |p| p.as_str());
    let caller = headers.get(CALLER_HEADER).map_or("", |c| c.as_str());
    // The component sees the authority it was called by: its own name.
    let uri = Uri::builder()
        .scheme("http")
        .authority(
            msg.subject
                .as_str()
                .rsplit('.')
                .next()
                .unwrap_or("component"),
        )
        .path_and_query(path)
        .build()
        .map_err(|e| format!("a lattice call with an invalid path {path:?}: {e}"))?;
    let mut request = http::Request::builder().method(method).uri(uri);
    for (name, values) in headers.iter() {
        let name: &str = name.as_ref();
        if name.starts_with("Trellis-") {
            continue;
        }
        let Ok(name) = HeaderName::try_from(name) else {
            continue;
        };
        for value in values {
            if let Ok(value) = HeaderValue::try_from(value.as_str()) {
                request = request.header(name.clone(), value);
            }
        }
    }
    if !caller.is_empty() {
        request = request.header("trellis-caller", caller);
    }
    request
        .body(Full::new(msg.payload.clone()))
        .map_err(|e| format!("a lattice call that is not a valid HTTP request: {e}"))
}
