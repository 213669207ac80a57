//! What the fuzz targets check, shared with the controller's property tests: the oracles live
//! in `host/controller/tests/oracles/mod.rs`, included here, so a check is written once. A
//! failed check is a crash here (a panic with what is wrong).

#[path = "../../host/controller/tests/oracles/mod.rs"]
mod oracles;

pub use oracles::{check_findings, on_the_wire, runtime_without_plugins, view, View};

use trellis_controller::state::Touched;
use trellis_runtime::LatticeSnapshot;

/// [`oracles::check_snapshot`], failing as a fuzz target fails.
pub fn check_snapshot(snapshot: &LatticeSnapshot) {
    if let Err(wrong) = oracles::check_snapshot(snapshot) {
        panic!("{wrong}");
    }
}

/// [`oracles::check_touched`], failing as a fuzz target fails.
pub fn check_touched(before: &View, after: &View, touched: &Touched) {
    if let Err(wrong) = oracles::check_touched(before, after, touched) {
        panic!("{wrong}");
    }
}
