//! The validator contract in Rust terms: implement [`Validator`] and call
//! [`export_validator!`](crate::export_validator).

use crate::types::{Diagnostic, PluginInfo};

/// A validator plugin: checks a manifest before it is stored or deployed. The controller runs
/// every loaded validator on `put` and on `trellis app validate`; a manifest with an error
/// diagnostic is refused.
pub trait Validator {
    /// Name, version and one-line description of the validator.
    fn describe() -> PluginInfo;
    /// What is wrong with the manifest (the OAM application as JSON). Paths point into it,
    /// e.g. `spec.components[1].traits[0].properties.instances`; see [`path`].
    fn validate(manifest: &serde_json::Value) -> Vec<Diagnostic>;
}

/// Builds diagnostic paths: `path::component(1)` is `spec.components[1]`, and
/// `path::trait_(1, 0)` is `spec.components[1].traits[0]`.
pub mod path {
    /// The path of the manifest's component at `index`, e.g. `spec.components[1]`.
    pub fn component(index: usize) -> String {
        format!("spec.components[{index}]")
    }

    /// The path of trait `index` of component `component`, e.g.
    /// `spec.components[1].traits[0]` (the `_` because `trait` is a keyword).
    pub fn trait_(component: usize, index: usize) -> String {
        format!("spec.components[{component}].traits[{index}]")
    }
}
