//! Requests held for a component that runs on no node yet: an app an autoscaler scaled to zero.
//! The HTTP server holds such a request (up to `hold_for_instance`) instead of answering 503,
//! and the node tells the controller at once, in a heartbeat sent right away, how many wait
//! for which component: the autoscaler counts them as requests in flight and starts an
//! instance.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

/// Held requests by component id.
#[derive(Default)]
pub(crate) struct Waiting {
    counts: Mutex<BTreeMap<String, u32>>,
    /// Wakes the heartbeat task when a request starts waiting.
    pub(crate) started: Notify,
}

impl Waiting {
    /// Counts one request waiting for `component` until the guard drops.
    pub(crate) fn hold(&self, component: &str) -> Held<'_> {
        *self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(component.to_string())
            .or_insert(0) += 1;
        self.started.notify_one();
        Held {
            waiting: self,
            component: component.to_string(),
        }
    }

    /// Requests waiting now, by component id (none listed with 0).
    pub(crate) fn counts(&self) -> BTreeMap<String, u32> {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

pub(crate) struct Held<'a> {
    waiting: &'a Waiting,
    component: String,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut counts = self
            .waiting
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.component) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.component);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_requests_are_counted_while_held() {
        let waiting = Waiting::default();
        let a = waiting.hold("app-web");
        let b = waiting.hold("app-web");
        let c = waiting.hold("app-api");
        assert_eq!(
            waiting.counts(),
            BTreeMap::from([("app-api".into(), 1), ("app-web".into(), 2)])
        );
        drop((a, c));
        assert_eq!(waiting.counts(), BTreeMap::from([("app-web".into(), 1)]));
        drop(b);
        assert!(waiting.counts().is_empty());
    }
}
