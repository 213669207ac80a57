//! The command executor: sends plugin commands as control-interface requests
//! ([`crate::commands::encode`]), and makes sure a command is never issued twice while it is in
//! flight.
//!
//! A command is *in flight* from the moment it is sent until the lattice state shows its effect,
//! a failure arrives (a `false` reply or a `*_failed` event), or it times out. A failed command
//! backs off exponentially (with jitter, capped) before it may be issued again, and the failure
//! is reported in the scaler's status.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use trellis_lattice::ctl::{self, CtlResponse};
use trellis_lattice::event::Event;
use trellis_runtime::bindings::Command;

use crate::churn::{ChurnGuard, CHURN_HOLD};
use crate::commands::{
    command_host, command_key, component_key, encode, provider_key, same_effect, satisfied, Origin,
};
use crate::state::LatticeState;

/// First retry delay after a failure; doubles per failure up to [`BACKOFF_CAP`].
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// The header naming the executor that sent a request, so that an executor watching the
/// lattice's commands can tell its own (already tracked) from other controllers'.
pub const SENDER_HEADER: &str = "Trellis-Sender";

/// The answer to a request, sent back to the reconcile loop.
#[derive(Debug)]
pub struct Outcome {
    pub key: String,
    pub result: Result<(), String>,
}

struct InFlight {
    command: Command,
    sent: Instant,
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub origin: Origin,
    pub reason: String,
    attempts: u32,
    retry_at: Instant,
    /// Held by the churn guard ([`crate::churn`]): kept even while the scaler stops asking,
    /// until the hold ends or the app is deployed again.
    churned: bool,
}

/// A command held until the lattice has the configs it names.
struct Waiting {
    origin: Origin,
    configs: Vec<String>,
    reason: String,
}

pub struct Executor {
    client: async_nats::Client,
    subjects: ctl::Subjects,
    timeout: Duration,
    in_flight: HashMap<String, InFlight>,
    failures: HashMap<String, Failure>,
    origins: HashMap<String, Origin>,
    /// Commands held until the lattice has what they need (by command key).
    waiting: HashMap<String, Waiting>,
    churn: ChurnGuard,
    outcomes: mpsc::UnboundedSender<Outcome>,
    /// This executor's id in [`SENDER_HEADER`].
    sender: String,
    /// Every command sent, for tests and `plan`-style accounting.
    pub sent_total: u64,
}

impl Executor {
    pub fn new(
        client: async_nats::Client,
        lattice: &str,
        timeout: Duration,
        outcomes: mpsc::UnboundedSender<Outcome>,
    ) -> Self {
        Self {
            client,
            subjects: ctl::Subjects::new(lattice),
            timeout,
            in_flight: HashMap::new(),
            failures: HashMap::new(),
            origins: HashMap::new(),
            waiting: HashMap::new(),
            churn: ChurnGuard::default(),
            outcomes,
            sender: uuid::Uuid::new_v4().simple().to_string(),
            sent_total: 0,
        }
    }

    /// Settles in-flight commands against the state: done when their effect shows, failed when
    /// they time out or their host is gone.
    pub fn settle(&mut self, state: &LatticeState, now: Instant, may_time_out: bool) {
        let mut timed_out = Vec::new();
        self.in_flight.retain(|key, f| {
            if satisfied(&f.command, state) {
                return false;
            }
            if command_host(&f.command).is_some_and(|h| !state.hosts.contains_key(h)) {
                return false;
            }
            if may_time_out && now.duration_since(f.sent) > self.timeout {
                timed_out.push(key.clone());
                return false;
            }
            true
        });
        for key in timed_out {
            let reason = format!("no confirmation within {:?} for {key}", self.timeout);
            self.fail(&key, reason, now);
        }
    }

    /// Reads failure events: they end the matching in-flight command as failed.
    pub fn on_event(&mut self, event: &Event, now: Instant) {
        let (key, reason) = match event {
            Event::ComponentScaleFailed(e) => (
                component_key(&e.host_id, &e.component_id),
                format!(
                    "host {} could not scale {} ({}): {}",
                    e.host_id, e.component_id, e.image_ref, e.error
                ),
            ),
            Event::ProviderStartFailed(e) => (
                provider_key(&e.host_id, &e.provider_id),
                format!(
                    "host {} could not start provider {} ({}): {}",
                    e.host_id, e.provider_id, e.provider_ref, e.error
                ),
            ),
            _ => return,
        };
        if self.in_flight.remove(&key).is_some() {
            self.fail(&key, reason, now);
        }
    }

    pub fn on_outcome(&mut self, outcome: Outcome, now: Instant) {
        if let Err(reason) = outcome.result {
            if self.in_flight.remove(&outcome.key).is_some() {
                self.fail(&outcome.key, reason, now);
            }
        }
    }

    fn fail(&mut self, key: &str, reason: String, now: Instant) {
        let Some(origin) = self.origins.get(key).cloned() else {
            return;
        };
        let attempts = self.failures.get(key).map(|f| f.attempts + 1).unwrap_or(1);
        let delay = backoff(key, attempts);
        tracing::warn!(
            app = %origin.app,
            scaler = %origin.scaler,
            key,
            attempts,
            retry_in = ?delay,
            "command failed: {reason}"
        );
        self.failures.insert(
            key.to_string(),
            Failure {
                origin,
                reason,
                attempts,
                retry_at: now + delay,
                churned: false,
            },
        );
    }

    /// Holds `key` after the churn guard refused its command.
    fn hold_churn(&mut self, key: &str, origin: &Origin, reason: String, now: Instant) {
        tracing::error!(app = %origin.app, scaler = %origin.scaler, key, "{reason}");
        self.origins.insert(key.to_string(), origin.clone());
        self.failures.insert(
            key.to_string(),
            Failure {
                origin: origin.clone(),
                reason,
                attempts: 1,
                retry_at: now + CHURN_HOLD,
                churned: true,
            },
        );
    }

    /// Ends churn holds of `app`'s commands: it was deployed again, so its scalers may try anew.
    pub fn forget_app(&mut self, app: &str) {
        self.failures
            .retain(|_, failure| !(failure.churned && failure.origin.app == app));
    }

    /// The latest failure of any command of this scaler that is still backing off or unresolved.
    pub fn failure_of(&self, origin: &Origin) -> Option<&Failure> {
        self.failures.values().find(|f| &f.origin == origin)
    }

    /// Why a command of this scaler is held back until the lattice has what it needs, if one is.
    pub fn waiting_of(&self, origin: &Origin) -> Option<&str> {
        self.waiting
            .values()
            .find(|w| &w.origin == origin)
            .map(|w| w.reason.as_str())
    }

    /// The apps with a command waiting for config `name`: its arrival is theirs to act on.
    pub fn waiting_for_config<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.waiting
            .values()
            .filter(move |w| w.configs.iter().any(|c| c == name))
            .map(|w| w.origin.app.as_str())
    }

    /// Who asked for the command with this key, while it is in flight or backing off.
    pub fn origin_of(&self, key: &str) -> Option<Origin> {
        self.origins.get(key).cloned()
    }

    /// After a pass over `apps`: forgets failures of their commands that no scaler asks for any
    /// more, and of ones now satisfied. Failures of other apps' commands stay.
    pub fn forget_failures(
        &mut self,
        wanted: &HashMap<String, Command>,
        apps: &BTreeSet<String>,
        state: &LatticeState,
    ) {
        let now = Instant::now();
        self.failures.retain(|key, failure| {
            (failure.churned && failure.retry_at > now)
                || !apps.contains(&failure.origin.app)
                || wanted
                    .get(key)
                    .is_some_and(|command| !satisfied(command, state))
        });
        self.churn.forget_old(now);
        self.waiting
            .retain(|key, w| !apps.contains(&w.origin.app) || wanted.contains_key(key));
        // Who asked for a command matters only while it is in flight or backing off.
        let (in_flight, failures) = (&self.in_flight, &self.failures);
        self.origins
            .retain(|key, _| in_flight.contains_key(key) || failures.contains_key(key));
    }

    /// Sends the commands that are neither in flight nor backing off, nor waiting for what they
    /// need ([`missing_configs`]). Returns how many were sent.
    pub fn issue(
        &mut self,
        origin: &Origin,
        commands: Vec<Command>,
        state: &LatticeState,
        now: Instant,
    ) -> usize {
        let mut sent = 0;
        self.waiting.retain(|_, w| &w.origin != origin);
        for command in commands {
            let key = command_key(&command);
            if self.in_flight.contains_key(&key) {
                continue;
            }
            let missing = missing_configs(&command, state);
            if !missing.is_empty() {
                let reason = format!(
                    "{key} waits for config {} to be in the lattice",
                    missing.join(", ")
                );
                let waiting = Waiting {
                    origin: origin.clone(),
                    configs: missing,
                    reason,
                };
                self.waiting.insert(key, waiting);
                continue;
            }
            if self.failures.get(&key).is_some_and(|f| f.retry_at > now) {
                continue;
            }
            if let Some(reason) = self.churn.note(&command, now) {
                self.hold_churn(&key, origin, reason, now);
                continue;
            }
            self.origins.insert(key.clone(), origin.clone());
            self.send(&key, &command, origin);
            self.in_flight.insert(key, InFlight { command, sent: now });
            sent += 1;
        }
        self.sent_total += sent as u64;
        sent
    }

    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether a request seen on the lattice was sent by this executor.
    pub fn sent_by_me(&self, headers: Option<&async_nats::HeaderMap>) -> bool {
        headers
            .and_then(|h| h.get(SENDER_HEADER))
            .is_some_and(|v| v.as_str() == self.sender)
    }

    /// Notes a command seen on the lattice (`wasmbus.ctl.v1.{lattice}.>`). One this executor
    /// did not send — another controller's, typically the previous owner of an app — counts as
    /// in flight here too, so an owner taking over never re-sends what its predecessor sent
    /// and the lattice has not carried out yet.
    ///
    /// A later command for the same thing supersedes an earlier one (a host carries out the
    /// newest scale it got), so the newest is what is awaited: awaiting the earlier one's
    /// count would wait for a state the lattice never reaches.
    pub fn observe(&mut self, command: Command, origin: Origin, now: Instant) {
        let key = command_key(&command);
        if self
            .in_flight
            .get(&key)
            .is_some_and(|f| same_effect(&f.command, &command))
        {
            return;
        }
        self.origins.entry(key.clone()).or_insert(origin);
        self.in_flight.insert(key, InFlight { command, sent: now });
    }

    /// Whether `command` would be held back now: in flight, or backing off after a failure.
    pub fn holds(&self, command: &Command, now: Instant) -> bool {
        let key = command_key(command);
        self.in_flight.contains_key(&key)
            || self.failures.get(&key).is_some_and(|f| f.retry_at > now)
    }

    /// The commands in flight, with who asked for them.
    pub fn in_flight(&self) -> impl Iterator<Item = (&Command, Option<&Origin>)> {
        self.in_flight
            .iter()
            .map(|(k, f)| (&f.command, self.origins.get(k)))
    }

    /// The origins of the commands in flight: their apps need a look on the next pass.
    pub fn in_flight_origins(&self) -> impl Iterator<Item = &Origin> {
        self.in_flight.keys().filter_map(|k| self.origins.get(k))
    }

    fn send(&self, key: &str, command: &Command, origin: &Origin) {
        let (subject, body) = encode(&self.subjects, command, origin);
        tracing::info!(app = %origin.app, scaler = %origin.scaler, %subject, "issuing command");
        let client = self.client.clone();
        let outcomes = self.outcomes.clone();
        let key = key.to_string();
        let timeout = self.timeout;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(SENDER_HEADER, self.sender.as_str());
        tokio::spawn(async move {
            let request = client.request_with_headers(subject.clone(), headers, body.into());
            let reply = tokio::time::timeout(timeout, request).await;
            let result = match reply {
                Err(_) => Err(format!("no reply to {subject} within {timeout:?}")),
                Ok(Err(e)) => Err(format!("request {subject} failed: {e}")),
                Ok(Ok(msg)) => {
                    match serde_json::from_slice::<CtlResponse<serde_json::Value>>(&msg.payload) {
                        Ok(r) if r.success => Ok(()),
                        Ok(r) => Err(r.message),
                        Err(e) => Err(format!("unreadable reply to {subject}: {e}")),
                    }
                }
            };
            let _ = outcomes.send(Outcome { key, result });
        });
    }
}

/// The configs a link names that the lattice does not have yet. A wasmCloud host refuses a
/// link whose configs it cannot find, and a config put a moment earlier may not have reached
/// the bucket: a link goes out only once the state shows every config it names.
fn missing_configs(command: &Command, state: &LatticeState) -> Vec<String> {
    let Command::PutLink(link) = command else {
        return Vec::new();
    };
    link.source_config
        .iter()
        .chain(&link.target_config)
        .filter(|name| !state.configs.contains_key(*name))
        .cloned()
        .collect()
}

/// Exponential backoff with ±20% jitter derived from the key, so that many commands failing at
/// once do not retry in lock step.
fn backoff(key: &str, attempts: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << attempts.saturating_sub(1).min(16));
    let base = exp.min(BACKOFF_CAP);
    let mut hash: u64 = 0xcbf29ce484222325;
    for b in key.bytes().chain(attempts.to_le_bytes()) {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    let jitter = (hash % 41) as f64 / 100.0 - 0.2; // -0.20 ..= +0.20
    base.mul_f64(1.0 + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let first = backoff("k", 1);
        let third = backoff("k", 3);
        assert!(first >= Duration::from_millis(400) && first <= Duration::from_millis(600));
        assert!(third >= Duration::from_millis(1600) && third <= Duration::from_millis(2400));
        assert!(backoff("k", 30) <= BACKOFF_CAP.mul_f64(1.2));
    }

    #[test]
    fn a_link_waits_for_every_config_it_names() {
        let link = Command::PutLink(trellis_runtime::bindings::Link {
            source_id: "http".into(),
            target: "echo".into(),
            name: "default".into(),
            wit_namespace: "wasi".into(),
            wit_package: "http".into(),
            interfaces: vec!["incoming-handler".into()],
            source_config: vec!["address".into()],
            target_config: vec!["settings".into()],
        });
        let mut state = LatticeState::default();
        assert_eq!(missing_configs(&link, &state), ["address", "settings"]);
        state.configs.insert("address".into(), Default::default());
        assert_eq!(missing_configs(&link, &state), ["settings"]);
        state.configs.insert("settings".into(), Default::default());
        assert!(missing_configs(&link, &state).is_empty());
    }
}
