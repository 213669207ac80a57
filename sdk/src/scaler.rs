//! The scaler contract in Rust terms: implement [`Scaler`] and call
//! [`export_scaler!`](crate::export_scaler).

use crate::lattice::Lattice;
use crate::types::{Command, Diagnostic, PluginInfo, ScalerContext, Status};

/// The outcome of one reconcile call: the commands to issue and where the trait stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub commands: Vec<Command>,
    pub status: Status,
}

impl Reconciled {
    /// Nothing to do: the lattice already matches the trait.
    pub fn deployed() -> Self {
        Self {
            commands: Vec::new(),
            status: Status::Deployed,
        }
    }

    /// No commands, and the trait cannot be satisfied as written.
    pub fn failed(reason: impl Into<String>) -> Self {
        Self {
            commands: Vec::new(),
            status: Status::Failed(reason.into()),
        }
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
