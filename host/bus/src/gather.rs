//! Scatter-gather: one request that many answer, such as `host.ping`, which every host of a
//! lattice answers. A NATS request returns the first reply only, so [`gather`] publishes with a
//! reply inbox of its own and listens on it for a [`Window`]: a fixed time (the controller's host
//! discovery, `trellis get hosts`), or until the replies stop coming (the HTTP gateway, which
//! answers a browser and should not wait longer than the hosts take).

use std::time::Duration;

use futures::StreamExt as _;

/// How long [`gather`] listens for replies, counted from when the request has been sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Never listen longer than this.
    pub limit: Duration,
    /// Stop once this long has passed after a reply without another; `None` listens for the
    /// whole `limit`.
    pub quiet: Option<Duration>,
}

impl Window {
    /// Listens for the whole of `limit`: every reply that arrives within it.
    pub const fn fixed(limit: Duration) -> Self {
        Self { limit, quiet: None }
    }

    /// After the first reply, listens until `quiet` passes without another, and never longer
    /// than `limit` in all.
    pub const fn until_quiet(quiet: Duration, limit: Duration) -> Self {
        Self {
            limit,
            quiet: Some(quiet),
        }
    }
}

/// Publishes `payload` on `subject` and returns every reply that arrives within `window`, in
/// the order they came. No replies is not an error: it means nobody answered. When nobody
/// listens on `subject` at all, the server says so at once and this returns no replies without
/// waiting out the window.
///
/// The errors are the NATS client's own (subscribing, publishing, flushing: the connection is
/// gone), unwrapped, so the caller can say what it was asking for.
pub async fn gather(
    client: &async_nats::Client,
    subject: String,
    payload: Vec<u8>,
    window: Window,
) -> anyhow::Result<Vec<async_nats::Message>> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await?;
    client
        .publish_with_reply(subject, inbox, payload.into())
        .await?;
    client.flush().await?;
    let limit = tokio::time::Instant::now() + window.limit;
    let mut deadline = limit;
    let mut gathered = Vec::new();
    while let Ok(Some(reply)) = tokio::time::timeout_at(deadline, replies.next()).await {
        if reply.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            break;
        }
        gathered.push(reply);
        if let Some(quiet) = window.quiet {
            deadline = limit.min(tokio::time::Instant::now() + quiet);
        }
    }
    Ok(gathered)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::nats_server::NatsServer;

    /// Answers every request on `subject` with `answer`, after `delay`.
    async fn responder(
        client: &async_nats::Client,
        subject: &str,
        answer: &'static str,
        delay: Duration,
    ) {
        let mut requests = client.subscribe(subject.to_string()).await.unwrap();
        let client = client.clone();
        tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                tokio::time::sleep(delay).await;
                let mut text = answer.as_bytes().to_vec();
                text.extend_from_slice(&request.payload);
                let reply = request.reply.expect("gather asks with a reply inbox");
                client.publish(reply, text.into()).await.unwrap();
            }
        });
    }

    fn texts(replies: &[async_nats::Message]) -> Vec<String> {
        let mut texts: Vec<String> = replies
            .iter()
            .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
            .collect();
        texts.sort();
        texts
    }

    #[tokio::test]
    async fn gathers_every_reply_within_the_window_and_stops_when_they_go_quiet() {
        let nats = NatsServer::start_temporary().unwrap();
        let hosts = async_nats::connect(nats.url()).await.unwrap();
        responder(&hosts, "ping", "a:", Duration::ZERO).await;
        responder(&hosts, "ping", "b:", Duration::ZERO).await;
        responder(&hosts, "ping", "late:", Duration::from_millis(600)).await;
        crate::sync(&hosts).await.unwrap();
        let client = async_nats::connect(nats.url()).await.unwrap();

        // A fixed window waits for the late reply.
        let window = Window::fixed(Duration::from_millis(1500));
        let started = Instant::now();
        let replies = gather(&client, "ping".into(), b"x".to_vec(), window).await;
        assert_eq!(texts(&replies.unwrap()), ["a:x", "b:x", "late:x"]);
        assert!(started.elapsed() >= Duration::from_millis(1500));

        // Quiet for 200 ms after the first two: the late one is not waited for.
        let window = Window::until_quiet(Duration::from_millis(200), Duration::from_secs(5));
        let started = Instant::now();
        let replies = gather(&client, "ping".into(), b"y".to_vec(), window).await;
        assert_eq!(texts(&replies.unwrap()), ["a:y", "b:y"]);
        let took = started.elapsed();
        assert!(took < Duration::from_millis(600), "took {took:?}");
    }

    #[tokio::test]
    async fn nobody_listening_is_no_replies_at_once() {
        let nats = NatsServer::start_temporary().unwrap();
        let client = async_nats::connect(nats.url()).await.unwrap();
        let started = Instant::now();
        let window = Window::fixed(Duration::from_secs(5));
        let replies = gather(&client, "nobody".into(), Vec::new(), window).await;
        assert!(replies.unwrap().is_empty());
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }
}
