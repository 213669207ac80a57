//! The churn guard: a scaler that flips one thing back and forth (start, stop, start, …) is
//! stopped before it hammers a host.
//!
//! Churn comes from a disagreement the scaler cannot see: a host that reports a running
//! provider's image in another form than it was asked for, so the scaler calls it outdated,
//! stops it, starts it again, and calls it outdated again. A real wasmCloud host took 40 such
//! commands a second that way. Each command's effect is noted per thing it changes (its
//! [`command_key`]); when the effect changed [`CHURN_FLIPS`] times within [`CHURN_WINDOW`],
//! the executor issues no more of that key's commands for [`CHURN_HOLD`] (or until the app's
//! entry changes: a put or a deploy) and the scaler's status says why.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use trellis_runtime::bindings::Command;

use crate::commands::command_key;

/// How far back flips count. Legitimate changes of one thing (an upgrade: stop, start; a scale
/// up then down) flip it a few times over minutes, not many times in seconds.
pub const CHURN_WINDOW: Duration = Duration::from_secs(30);
/// Flips within the window that make churn: three round trips (start/stop, start/stop,
/// start/stop). Two could be an operator changing their mind and back.
pub const CHURN_FLIPS: usize = 6;
/// How long a churning thing is left alone: long enough for an operator to read the status
/// and fix the cause; putting or deploying the app again ends it sooner
/// ([`crate::executor::Executor::forget_app`]).
pub const CHURN_HOLD: Duration = Duration::from_secs(600);

/// Recent effects per command key.
#[derive(Default)]
pub struct ChurnGuard {
    recent: HashMap<String, VecDeque<(Instant, String)>>,
}

impl ChurnGuard {
    /// Notes that `command` is about to be sent; returns why not, if sending it would churn.
    pub fn note(&mut self, command: &Command, now: Instant) -> Option<String> {
        let key = command_key(command);
        let recent = self.recent.entry(key.clone()).or_default();
        while recent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > CHURN_WINDOW)
        {
            recent.pop_front();
        }
        recent.push_back((now, effect(command)));
        let flips = recent
            .iter()
            .zip(recent.iter().skip(1))
            .filter(|((_, a), (_, b))| a != b)
            .count();
        if flips < CHURN_FLIPS {
            return None;
        }
        let first = recent.front().map_or(now, |(at, _)| *at);
        let seconds = now.duration_since(first).as_secs_f64();
        let reason = format!(
            "churn: {key} changed back and forth {flips} times in {seconds:.1}s (last: {}); not sending more for {}s. A host may report it differently from how it was asked (an image in another form); fix the cause, then deploy again",
            effect(command),
            CHURN_HOLD.as_secs()
        );
        recent.clear();
        Some(reason)
    }

    /// Forgets keys with no command within the window (the guard stays as small as the churn).
    pub fn forget_old(&mut self, now: Instant) {
        self.recent.retain(|_, recent| {
            recent
                .back()
                .is_some_and(|(at, _)| now.duration_since(*at) <= CHURN_WINDOW)
        });
    }
}

/// What a command does to its key's thing, for telling a flip from a repeat.
fn effect(command: &Command) -> String {
    match command {
        Command::ScaleComponent(c) => format!("scale to {} of {}", c.count, c.image),
        Command::StartProvider(c) => format!("start {}", c.image),
        Command::StopProvider(_) => "stop".into(),
        Command::PutLink(l) => format!("put link to {}", l.target),
        Command::DeleteLink(_) => "delete link".into(),
        Command::PutConfig(c) => format!("put config ({} entries)", c.entries.len()),
        Command::DeleteConfig(_) => "delete config".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_runtime::bindings::{StartProvider, StopProvider};

    fn start() -> Command {
        Command::StartProvider(StartProvider {
            host_id: "h".into(),
            provider_id: "p".into(),
            image: "wasmcloud+builtin://http-server".into(),
            config: vec![],
        })
    }

    fn stop() -> Command {
        Command::StopProvider(StopProvider {
            host_id: "h".into(),
            provider_id: "p".into(),
        })
    }

    #[test]
    fn three_round_trips_in_seconds_are_churn() {
        let mut guard = ChurnGuard::default();
        let t0 = Instant::now();
        let mut refused = None;
        for i in 0..8u64 {
            let command = if i % 2 == 0 { stop() } else { start() };
            if let Some(reason) = guard.note(&command, t0 + Duration::from_millis(25 * i)) {
                refused = Some((i, reason));
                break;
            }
        }
        let (at, reason) = refused.expect("churn was not noticed");
        assert_eq!(at, 6, "the seventh command (sixth flip) is refused");
        assert!(reason.contains("provider/h/p"), "{reason}");
    }

    #[test]
    fn repeats_and_slow_changes_are_not_churn() {
        let mut guard = ChurnGuard::default();
        let t0 = Instant::now();
        // The same start retried many times (a host that keeps failing) is not a flip.
        for i in 0..20u64 {
            assert!(guard
                .note(&start(), t0 + Duration::from_millis(i))
                .is_none());
        }
        // Flips spread out over minutes never gather in one window.
        for i in 0..20u64 {
            let command = if i % 2 == 0 { stop() } else { start() };
            let at = t0 + CHURN_WINDOW / 2 * (i as u32 + 1);
            assert!(guard.note(&command, at).is_none(), "flip {i}");
        }
    }
}
