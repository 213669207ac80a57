//! How often a host says it is alive, and how long a controller hears nothing before it calls
//! the host gone. Chosen together so that a killed host's work runs elsewhere within 5 s
//! (wasmCloud 2 reports about 4 s; wadm's reaper takes minutes):
//!
//! - detection comes at most [`HOST_TIMEOUT`] after the host's last heartbeat, so at most that
//!   long after it died, plus the controller's check interval (250 ms);
//! - starting the work elsewhere takes well under a second (the component is compiled where
//!   it lands; a small one in milliseconds).
//!
//! Silence the controller cannot judge (it is disconnected from NATS, or behind on events) is
//! not counted against hosts: the false-death guard in the reconcile loop.

use std::time::Duration;

/// Between two heartbeats of a host. 1 s costs one small message per host per second; a
/// lattice of thousands of hosts raises it together with [`HOST_TIMEOUT`] (`docs/scale.md`).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// Silence after which a host counts as gone: three heartbeats, so one late or lost heartbeat
/// (a loaded machine, a NATS hiccup) does not move work.
pub const HOST_TIMEOUT: Duration = Duration::from_secs(3);
