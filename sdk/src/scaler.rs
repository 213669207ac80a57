//! The scaler contract in Rust terms: implement [`Scaler`] and call
//! [`export_scaler!`](crate::export_scaler).

use crate::lattice::Lattice;
use crate::types::{Command, Diagnostic, PluginInfo, ScalerContext, Status};

/// The outcome of one reconcile call: the commands to issue, where the trait stands, and when
/// to be called again even if nothing changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// The commands that move the lattice toward what the trait asks for. Return the same ones on
    /// every pass until they take effect: the controller skips those still in flight.
    pub commands: Vec<Command>,
    /// Where the trait stands, as the app's status shows it.
    pub status: Status,
    /// Call `reconcile` again after this many milliseconds even if nothing changes: for
    /// policies that act on time (cooldowns, stabilisation windows, schedules). `None`: when
    /// something changes, and at the controller's periodic resync. The controller waits at
    /// least 100 ms and at most an hour.
    pub recheck_after_ms: Option<u32>,
    /// Handed back as [`ScalerContext::memo`] on the next call for this trait (`None`:
    /// forget). At most 4 KiB; more fails the call.
    pub memo: Option<String>,
}

impl Reconciled {
    /// These commands and this status; no recheck asked.
    pub fn new(commands: Vec<Command>, status: Status) -> Self {
        Self {
            commands,
            status,
            recheck_after_ms: None,
            memo: None,
        }
    }

    /// The same, and get `memo` back as [`ScalerContext::memo`] on the next call.
    pub fn remember(mut self, memo: impl Into<String>) -> Self {
        self.memo = Some(memo.into());
        self
    }

    /// The same, and call again after `delay` even if nothing changes.
    pub fn recheck_after(mut self, delay: std::time::Duration) -> Self {
        self.recheck_after_ms = Some(u32::try_from(delay.as_millis()).unwrap_or(u32::MAX));
        self
    }

    /// Nothing to do: the lattice already matches the trait.
    pub fn deployed() -> Self {
        Self::new(Vec::new(), Status::Deployed)
    }

    /// No commands, and the trait cannot be satisfied as written.
    pub fn failed(reason: impl Into<String>) -> Self {
        Self::new(Vec::new(), Status::Failed(reason.into()))
    }
}

/// A scaler plugin: decides how many instances of one component run where (or which links and
/// configs exist) for one trait of an application.
///
/// Implementations are pure functions of their arguments: the same context and lattice give
/// the same answer. The controller calls `reconcile` on every pass and drops commands that are
/// already in flight, so returning the same command on consecutive passes is expected.
pub trait Scaler {
    /// Name, version and the trait types this scaler handles.
    fn describe() -> PluginInfo;
    /// The commands that move the lattice toward what the trait asks for, and the status.
    fn reconcile(ctx: &ScalerContext, lattice: &dyn Lattice) -> Reconciled;
    /// The commands that remove what this trait made (on undeploy).
    fn cleanup(ctx: &ScalerContext, lattice: &dyn Lattice) -> Vec<Command>;
    /// What is wrong with the trait's properties, before any reconcile: called when a manifest
    /// is put or validated. Paths are relative to the properties. Usually one line:
    /// `ctx.check_properties::<MyProperties>()`. The default finds nothing wrong.
    fn check(ctx: &ScalerContext) -> Vec<Diagnostic> {
        let _ = ctx;
        Vec::new()
    }
}
