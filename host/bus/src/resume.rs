//! Long-lived JetStream inputs that survive a nats-server restart.
//!
//! Why this exists: the controller's event stream and every KV watch (controller and node) are
//! read for as long as the process lives, through async-nats' *ordered consumers*. Those are
//! ephemeral server-side consumers that the client recreates when it notices a gap, but after
//! a nats-server restart (same store, so the streams and buckets are still there) that recovery
//! is not dependable: the pull consumer behind the event stream fails with `consumer not found`
//! and stops, a KV watch's push consumer reports `missed idle heartbeat` and then retries its
//! recreation with pauses of up to 10 s, and until the missed heartbeats are noticed (up to
//! 30 s for a pull consumer) an idle stream just stays silent. A loop reading such a stream with
//! `Some(x) = stream.next()` in a `select!` loses that input for good when it ends.
//!
//! So each input is wrapped in [`resume`]: the wrapper remembers the position (stream sequence,
//! KV revision) of the last item it handed out, and whenever the inner stream fails, ends, or
//! the NATS connection was re-established under it, it drops it and opens a new one that
//! starts just after that position, with a capped backoff between failed attempts. Nothing is
//! missed and nothing handed out is handed out again; the wrapper itself never ends. After a
//! reopen it yields [`Resumed::Reopened`] once, so a reader can treat what it derived from the
//! input as possibly stale (e.g. re-ask hosts for their inventory).

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt as _};

/// How often the wrapper checks whether the client reconnected: a reconnect means the server
/// may have restarted and the inner consumer may be gone, whatever the consumer says.
const RECONNECT_CHECK: Duration = Duration::from_millis(250);
/// The first pause after a failed (re)open; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Short enough that an input is back within seconds of JetStream answering again.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What a resumed input yields.
#[derive(Debug)]
pub enum Resumed<T> {
    /// The next item, in order.
    Item(T),
    /// The input was lost and is open again, resuming after the last item: whatever was
    /// derived from it may be stale.
    Reopened,
}

/// Wraps a long-lived JetStream input so that it survives a server restart (see the module
/// docs). `what` names the input in logs ("event stream TRELLIS_EVENTS_default"); `first` is an
/// input already opened (so nothing sent before the caller starts reading is missed), or
/// `None` to open it here; `position` says where an item sits in its stream; `open(after)`
/// opens the input anew, starting after position `after` (`None`: nothing read yet, start as
/// the first one did).
pub fn resume<T, E, S, OE, F, Fut>(
    client: &async_nats::Client,
    what: impl Into<String>,
    first: Option<S>,
    position: fn(&T) -> u64,
    open: F,
) -> BoxStream<'static, Resumed<T>>
where
    T: Send + 'static,
    E: Display + Send + 'static,
    S: Stream<Item = Result<T, E>> + Send + Unpin + 'static,
    OE: Display + Send + 'static,
    F: FnMut(Option<u64>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<S, OE>> + Send + 'static,
{
    let mut check = tokio::time::interval(RECONNECT_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let input = Input {
        connects: connects(client),
        client: client.clone(),
        what: what.into(),
        current: first,
        position,
        open,
        after: None,
        failures: 0,
        lost: None,
        check,
    };
    futures::stream::unfold(input, |mut input| async move {
        let next = input.next().await;
        Some((next, input))
    })
    .boxed()
}

/// Follows every key of a KV bucket and survives a server restart (see [`resume`]).
/// `history`: start with the current value of every key (as `watch_with_history`), else with
/// changes only (as `watch_all`). After a reopen the watch resumes after the last revision seen.
pub fn kv_watch(
    client: &async_nats::Client,
    store: kv::Store,
    first: Option<kv::Watch>,
    history: bool,
) -> BoxStream<'static, Resumed<kv::Entry>> {
    let what = format!("watch of KV bucket {}", store.name);
    resume(
        client,
        what,
        first,
        |entry: &kv::Entry| entry.revision,
        move |after| {
            let store = store.clone();
            async move {
                match after {
                    Some(revision) => store.watch_all_from_revision(revision + 1).await,
                    None if history => store.watch_with_history(">").await,
                    None => store.watch_all().await,
                }
            }
        },
    )
}

/// The items of a resumed input, without the reopen markers: for readers whose state cannot go
/// stale (each item carries the whole value of its key).
pub fn items<T: Send + 'static>(input: BoxStream<'static, Resumed<T>>) -> BoxStream<'static, T> {
    input
        .filter_map(|r| {
            std::future::ready(match r {
                Resumed::Item(item) => Some(item),
                Resumed::Reopened => None,
            })
        })
        .boxed()
}

fn connects(client: &async_nats::Client) -> u64 {
    client.statistics().connects.load(Ordering::Relaxed)
}

struct Input<S, F, T> {
    client: async_nats::Client,
    what: String,
    current: Option<S>,
    position: fn(&T) -> u64,
    open: F,
    /// The position of the last item handed out.
    after: Option<u64>,
    /// Failures since the last item: the backoff grows with them.
    failures: u32,
    /// Why the input was lost, when it was: said (and yielded) once it is open again.
    lost: Option<String>,
    /// The client's connection count when `current` was opened.
    connects: u64,
    check: tokio::time::Interval,
}

impl<T, E, S, OE, F, Fut> Input<S, F, T>
where
    E: Display,
    S: Stream<Item = Result<T, E>> + Unpin,
    OE: Display,
    F: FnMut(Option<u64>) -> Fut,
    Fut: Future<Output = Result<S, OE>>,
{
    async fn next(&mut self) -> Resumed<T> {
        loop {
            let Some(current) = self.current.as_mut() else {
                if self.failures > 0 {
                    tokio::time::sleep(backoff(self.failures)).await;
                }
                // Read before opening: a reconnect during the open is caught at the next check.
                let connects = connects(&self.client);
                match (self.open)(self.after).await {
                    Ok(stream) => {
                        self.current = Some(stream);
                        self.connects = connects;
                        if let Some(why) = self.lost.take() {
                            tracing::info!(input = %self.what, after = ?self.after, "reopened after it {why}; resuming after the last item read");
                            return Resumed::Reopened;
                        }
                    }
                    Err(e) => {
                        self.failures += 1;
                        tracing::warn!(input = %self.what, attempt = self.failures, retry_in = ?backoff(self.failures), "cannot open: {e}");
                    }
                }
                continue;
            };
            tokio::select! {
                next = current.next() => match next {
                    Some(Ok(item)) => {
                        self.after = Some((self.position)(&item));
                        self.failures = 0;
                        return Resumed::Item(item);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(input = %self.what, after = ?self.after, "failed ({e}); reopening it");
                        self.failures += 1;
                        self.lose(format!("failed ({e})"));
                    }
                    None => {
                        tracing::warn!(input = %self.what, after = ?self.after, "ended; reopening it");
                        self.failures += 1;
                        self.lose("ended".into());
                    }
                },
                _ = self.check.tick() => {
                    // Not a failure of the input: reopen at once, without backoff.
                    if connects(&self.client) != self.connects {
                        self.lose("was cut off by a NATS reconnect (the server may have restarted)".into());
                    }
                }
            }
        }
    }

    fn lose(&mut self, why: String) {
        self.current = None;
        // The first reason is the one that counts; a failed reopen keeps it.
        self.lost.get_or_insert(why);
    }
}

fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(8);
    (FIRST_BACKOFF * factor).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(5), Duration::from_millis(1600));
        assert_eq!(backoff(6), MAX_BACKOFF);
        assert_eq!(backoff(1000), MAX_BACKOFF);
    }
}
