//! The placement contract in Rust terms: implement [`Placement`] and call
//! [`export_placement!`](crate::export_placement).

use crate::lattice::Lattice;
use crate::types::{Host, PlacementRequest, PluginInfo};

/// Whether one candidate host may take the instance, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The candidate host this verdict is about.
    pub host_id: String,
    /// Whether the host may take one more instance; a host must pass every plugin's filter.
    pub fits: bool,
    /// Why not, when it does not fit.
    pub reason: String,
}

impl Verdict {
    /// A verdict that `host_id` may take the instance.
    pub fn fits(host_id: &str) -> Self {
        Self {
            host_id: host_id.into(),
            fits: true,
            reason: String::new(),
        }
    }

    /// A verdict that `host_id` may not take the instance, with `reason` saying why not.
    pub fn refused(host_id: &str, reason: impl Into<String>) -> Self {
        Self {
            host_id: host_id.into(),
            fits: false,
            reason: reason.into(),
        }
    }
}

/// How much a placement plugin likes one candidate host: higher is better. The controller
/// normalises each plugin's scores to 0..=100 before summing plugins, so only the order and the
/// relative distances of one plugin's values matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostScore {
    /// The candidate host this score is for.
    pub host_id: String,
    /// The plugin's preference for the host, higher is better, on any scale: the controller
    /// normalises each plugin's scores to 0..=100.
    pub value: i64,
}

/// A placement plugin: decides *where* instances go, in the style of the Kubernetes scheduler
/// framework. Every loaded placement plugin takes part in each ranking: the filters in load
/// order (a host must pass all), then the normalised scores summed.
///
/// Both calls get the whole candidate list at once (one call per ranking, not per host).
/// Candidates already carry the requested labels.
pub trait Placement {
    /// Name, version, and in `trait_types` the policy names under which apps opt in to this
    /// plugin (`trellis.dev/placement`); empty to take part in every ranking.
    fn describe() -> PluginInfo;
    /// One verdict per candidate; a candidate without a verdict does not fit.
    fn filter(
        request: &PlacementRequest,
        candidates: &[Host],
        lattice: &dyn Lattice,
    ) -> Vec<Verdict>;
    /// One score per candidate; a candidate without a score counts as the lowest.
    fn score(
        request: &PlacementRequest,
        candidates: &[Host],
        lattice: &dyn Lattice,
    ) -> Vec<HostScore>;
}
