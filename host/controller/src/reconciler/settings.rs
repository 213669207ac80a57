//! The settings of the reconcile loop, with their defaults.

use std::time::Duration;

use crate::health::HealthThresholds;

/// The default of [`LoopSettings::sweep_interval`]. The sweep is the safety net behind each
/// undeploy's one-shot cleanup (lost when its controller dies first, or when a stop fails): it
/// only has to come round eventually, and each run walks every instance on the lattice (10,000
/// hosts), so twice a minute bounds how long an orphan runs at little cost.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    /// A full pass runs at least this often, even without events.
    pub resync_interval: Duration,
    /// A host silent for this long is considered gone (unreachable) and its instances
    /// rescheduled.
    pub host_timeout: Duration,
    /// When a host becomes suspect (new work avoids it) and healthy again.
    pub health: HealthThresholds,
    /// How long a command may stay unconfirmed before it counts as failed.
    pub command_timeout: Duration,
    /// Wait this long after a change before a pass, so a burst of events makes one pass.
    pub debounce: Duration,
    /// How long a controller's ownership of its apps outlives its last renewal: when a
    /// controller dies, others take its apps over this long after they last heard from it.
    pub lease: Duration,
    /// At start, lattice events this old are replayed from the event stream (then every host
    /// is asked for its inventory): a controller restarting within this window misses nothing.
    pub event_replay: Duration,
    /// How often instances the controller started are checked against the manifest store, and
    /// those no deployed app declares any more are stopped (`sweep.rs`).
    pub sweep_interval: Duration,
}

impl Default for LoopSettings {
    fn default() -> Self {
        Self {
            resync_interval: Duration::from_secs(5),
            host_timeout: trellis_lattice::liveness::HOST_TIMEOUT,
            health: HealthThresholds::default(),
            command_timeout: Duration::from_secs(30),
            debounce: Duration::from_millis(20),
            lease: Duration::from_secs(3),
            event_replay: Duration::from_secs(60),
            sweep_interval: SWEEP_INTERVAL,
        }
    }
}
