//! The reconcile loop of one lattice: follow one event from arrival to the commands it causes.
//! The loop itself, from `select!` to the commands of a pass, is [`Reconciler`] in `run.rs`.
//!
//! 1. Events (a JetStream stream over `wasmbus.evt.{lattice}.>`, so a restarted controller
//!    replays what it missed), link and config changes (their KV buckets), manifest changes
//!    (the manifest store's KV bucket), ownership changes, command outcomes, `plan` queries and
//!    a periodic tick (`inputs.rs`) all arrive in one `select!` and update
//!    [`LatticeState`](crate::state::LatticeState), the deployed apps (`deployed.rs`) or who
//!    owns them ([`Ownership`](crate::ownership::Ownership)).
//! 2. A change marks the apps it concerns dirty (`dirty.rs`): a change to a component marks
//!    the apps that run it; a host joining, leaving or changing labels marks every app; the
//!    periodic tick marks every app. A short debounce later a *pass* runs.
//! 3. A pass takes one `LatticeSnapshot`, and for every scaler of every dirty app this
//!    controller owns calls the scaler plugin that handles the trait type (`planning.rs`;
//!    placement plugins answer its `rank-hosts`). Plugin calls run on a blocking thread; a
//!    failing plugin fails only its own scaler.
//! 4. The commands go to the [`Executor`](crate::executor::Executor), which drops those in
//!    flight or backing off.
//! 5. Each scaler's status, aggregated per app, is published on `wadm.status.{lattice}.{app}`
//!    and kept in a KV bucket (so every controller answers `status`) when it changes
//!    (`status.rs`).
//!
//! At start, and once NATS is back after an outage, every host is asked for its inventory
//! (`discovery.rs`).
//!
//! An undeploy's cleanup runs once, in memory. What it leaves (its controller died first, a
//! stop failed) is found by a periodic sweep of the state (`sweep.rs`): instances annotated as
//! started by trellis for an app no deployed version declares them in are stopped by the app's
//! owner, so nothing about cleanup has to survive a restart but the manifest store itself.

mod deployed;
mod dirty;
mod discovery;
mod inputs;
// Public, hidden, only so that `benches/manifest_size.rs` can plan an app without NATS.
#[doc(hidden)]
pub mod planning;
mod run;
mod scope;
mod settings;
mod status;
mod sweep;

pub use inputs::{event_stream, events_stream, EventMessage, Inputs, Query};
pub use run::Reconciler;
pub use settings::{LoopSettings, SWEEP_INTERVAL};
pub use status::{status_bucket, Statuses};
