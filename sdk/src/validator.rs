//! The validator contract in Rust terms: implement [`Validator`] and call
//! [`export_validator!`](crate::export_validator).

use crate::types::{Diagnostic, PluginInfo};

/// A validator plugin: checks a manifest before it is stored or deployed. The controller runs
/// every loaded validator on `put` and on `trellis app validate`; a manifest with an error
/// diagnostic is refused.
pub trait Validator {
    fn describe() -> PluginInfo;
    /// What is wrong with the manifest (the OAM application as JSON). Paths point into it,
    /// e.g. `spec.components[1].traits[0].properties.instances`; see [`path`].
    fn validate(manifest: &serde_json::Value) -> Vec<Diagnostic>;
}

/// Builds diagnostic paths: `path::component(1)` is `spec.components[1]`, and
/// `path::trait_(1, 0)` is `spec.components[1].traits[0]`.
pub mod path {
    pub fn component(index: usize) -> String {
        format!("spec.components[{index}]")
    }

    pub fn trait_(component: usize, index: usize) -> String {
        format!("spec.components[{component}].traits[{index}]")
    }
}
