//! Serving one HTTP request with a fresh instance of a component, within the node's bounds
//! ([`crate::limits`]):
//!
//! - **time**: every request has a deadline, the component's `request_timeout_ms` or the
//!   node's default, shortened by the caller's when the request is a lattice call. Waiting for
//!   a free instance counts. Past it the instance is stopped (a guest computing is interrupted
//!   at the next epoch tick; one waiting on I/O is dropped), its slot is free again, the node
//!   logs it and the caller gets a 504 that says so.
//! - **memory**: all the instance's memories together, and its tables, are capped; the error
//!   names the bound the guest ran into. The instance's host resources are capped too.
//! - **counts**: requests in flight per component (running and waiting) are capped: past it a
//!   request gets a 503 at once.
//! - **bodies**: a request body over the cap gets a 413, before the guest starts when the
//!   length is declared, as soon as the cap is passed otherwise.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Instant;
use tracing::{warn, Instrument as _};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView as _;

use crate::body::text_response;
use crate::component::RunningComponent;
use crate::guest::{RequestState, DEADLINE_TRAP};

impl RunningComponent {
    /// Serves one HTTP request in a fresh instance, waiting (within its deadline) for a free
    /// instance slot first. The request comes from the HTTP server provider or from another
    /// component over NATS; `budget` is what is left of a lattice caller's deadline. Every
    /// request is counted in the component's traffic figures, refused ones too.
    pub(crate) async fn serve_http<B>(
        &self,
        request: hyper::Request<B>,
        budget: Option<Duration>,
    ) -> hyper::Response<HyperOutgoingBody>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let _in_flight = self.traffic.begin();
        let started = std::time::Instant::now();
        let response = self.serve_bounded(request, budget).await;
        self.traffic
            .record(started.elapsed(), response.status().is_server_error());
        response
    }

    async fn serve_bounded<B>(
        &self,
        request: hyper::Request<B>,
        budget: Option<Duration>,
    ) -> hyper::Response<HyperOutgoingBody>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let id = &self.id;
        let Some(proxy) = self.loaded.proxy.clone() else {
            return text_response(
                500,
                format!("component {id} does not export wasi:http/incoming-handler"),
            );
        };
        let limits = &self.services.limits;
        let Ok(_in_flight) = self.requests.clone().try_acquire_owned() else {
            warn!(component_id = %id, limit = limits.max_concurrent_requests, "request refused: too many in flight");
            return text_response(
                503,
                format!(
                    "component {id} has {} requests in flight on this node, its limit (max concurrent requests); try again later",
                    limits.max_concurrent_requests
                ),
            );
        };
        let body_cap = limits.max_request_body;
        if declared_length(&request).is_some_and(|length| length > body_cap) {
            return too_large(id, body_cap);
        }
        let env = self.env();
        let timeout = budget.map_or(env.request_timeout, |b| b.min(env.request_timeout));
        let deadline = Instant::now() + timeout;

        let permit = match tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned())
            .await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return text_response(503, format!("component {id} is stopping")),
            Err(_) => {
                warn!(component_id = %id, ?timeout, "request stopped at its deadline while waiting for a free instance");
                return text_response(
                    504,
                    format!(
                        "component {id} had no free instance (scale {}) within the request's deadline of {timeout:?}",
                        self.max_instances
                    ),
                );
            }
        };

        let over_cap = Arc::new(AtomicBool::new(false));
        let request = request.map(|body| CappedBody {
            inner: body,
            cap: body_cap,
            read: 0,
            over: over_cap.clone(),
        });
        let mut store = RequestState::store(proxy.engine(), env, self.services.clone(), deadline);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let prepared = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .and_then(|req| {
                let out = store.data_mut().http().new_response_outparam(sender)?;
                Ok((req, out))
            });
        let (req, out) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return text_response(400, format!("bad request: {e:#}")),
        };

        // The guest runs in its own task: it may keep streaming the body after it has handed
        // over the response head. The permit lives as long as the instance does, and neither
        // outlives the deadline.
        let span = tracing::debug_span!("http_request", component_id = %id);
        let guest = tokio::spawn(
            async move {
                let _permit = permit;
                let run = async {
                    let proxy = proxy.instantiate_async(&mut store).await?;
                    proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut store, req, out)
                        .await
                };
                let outcome = tokio::time::timeout_at(deadline, run).await;
                let limit_hit = store.data_mut().limit_hit();
                (outcome, limit_hit)
            }
            .instrument(span),
        );

        let answer = tokio::time::timeout_at(deadline, receiver).await;
        if over_cap.load(Ordering::Relaxed) {
            return too_large(id, body_cap);
        }
        match answer {
            Ok(Ok(Ok(response))) => response,
            Ok(Ok(Err(code))) => {
                warn!(component_id = %id, error = ?code, "component answered with an error");
                text_response(500, format!("component {id} failed: {code:?}"))
            }
            Err(_) => stopped_at_deadline(id, timeout),
            Ok(Err(_)) => {
                let (outcome, limit_hit) = match guest.await {
                    Ok(finished) => finished,
                    Err(e) => {
                        return text_response(
                            500,
                            format!(
                                "component {id} failed to handle the request: its task failed: {e}"
                            ),
                        )
                    }
                };
                if over_cap.load(Ordering::Relaxed) {
                    return too_large(id, body_cap);
                }
                let error = match outcome {
                    Err(_) => return stopped_at_deadline(id, timeout),
                    Ok(Ok(())) => "it never set a response".to_string(),
                    Ok(Err(e)) if format!("{e:#}").contains(DEADLINE_TRAP) => {
                        return stopped_at_deadline(id, timeout)
                    }
                    Ok(Err(e)) => match limit_hit {
                        Some(limit) => format!("{limit}: {e:#}"),
                        None => format!("{e:#}"),
                    },
                };
                warn!(component_id = %id, %error, "component failed to handle a request");
                text_response(
                    500,
                    format!("component {id} failed to handle the request: {error}"),
                )
            }
        }
    }
}

fn stopped_at_deadline(id: &str, timeout: Duration) -> hyper::Response<HyperOutgoingBody> {
    warn!(component_id = %id, ?timeout, "request stopped at its deadline; the instance is gone and its slot free");
    text_response(
        504,
        format!(
            "component {id} did not answer within the request's deadline of {timeout:?} and was stopped (request_timeout_ms in its config sets the deadline)"
        ),
    )
}

fn too_large(id: &str, cap: u64) -> hyper::Response<HyperOutgoingBody> {
    warn!(component_id = %id, cap, "request refused: body over the node's limit");
    text_response(
        413,
        format!("the request body for component {id} is larger than this node accepts ({cap} bytes, max request body)"),
    )
}

fn declared_length<B>(request: &hyper::Request<B>) -> Option<u64> {
    request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A request body that fails once more than `cap` bytes have come through, and says so in
/// `over` (the guest sees a body error; the caller a 413).
struct CappedBody<B> {
    inner: B,
    cap: u64,
    read: u64,
    over: Arc<AtomicBool>,
}

impl<B> Body for CappedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            self.read = self.read.saturating_add(data.len() as u64);
            if self.read > self.cap {
                self.over.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpRequestBodySize(
                    Some(self.read),
                ))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt as _, StreamBody};

    fn chunks(
        n: usize,
        size: usize,
    ) -> impl Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Unpin {
        let frames = (0..n).map(move |_| Ok(Frame::data(Bytes::from(vec![b'x'; size]))));
        StreamBody::new(futures::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_body_within_the_cap_passes_whole() {
        let over = Arc::new(AtomicBool::new(false));
        let body = CappedBody {
            inner: chunks(4, 10),
            cap: 40,
            read: 0,
            over: over.clone(),
        };
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 40);
        assert!(!over.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_body_past_the_cap_fails_and_says_so() {
        let over = Arc::new(AtomicBool::new(false));
        let body = CappedBody {
            inner: chunks(5, 10),
            cap: 40,
            read: 0,
            over: over.clone(),
        };
        assert!(matches!(
            body.collect().await,
            Err(wasmtime_wasi_http::Error::HttpRequestBodySize(Some(50)))
        ));
        assert!(over.load(Ordering::Relaxed));
    }
}
