//! Validation of a manifest's `rollout` policy: its strategy must be one a loaded rollout
//! plugin provides, and that plugin checks the policy's properties (its `check`).

use trellis_lattice::api::{Diagnostic, ROLLOUT_POLICY};
use trellis_lattice::Manifest;
use trellis_runtime::Runtime;
use trellis_sdk::suggest::closest;

use crate::validate::{error, from_plugin, plugin_failed};

/// The findings about `manifest`'s rollout policy (none when it has none).
pub fn policy(runtime: &Runtime, manifest: &Manifest) -> Vec<Diagnostic> {
    let Some((pi, policy)) = manifest
        .spec
        .policies
        .iter()
        .enumerate()
        .find(|(_, p)| p.name == ROLLOUT_POLICY)
    else {
        return Vec::new();
    };
    let plugins = runtime.plugins();
    let Some(plugin) = plugins.rollouts.get(&policy.policy_type) else {
        let known: Vec<String> = plugins.rollouts.keys().cloned().collect();
        let hint = match closest(&policy.policy_type, &known) {
            Some(c) => format!("did you mean `{c}`?"),
            None => format!(
                "put a rollout plugin that provides it in {} first",
                runtime.plugin_dir().display()
            ),
        };
        return vec![error(
            format!("spec.policies[{pi}].type"),
            format!(
                "unknown rollout strategy `{}`; loaded strategies: {}",
                policy.policy_type,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
            hint,
        )];
    };
    let properties_path = format!("spec.policies[{pi}].properties");
    let properties = serde_json::to_string(&policy.properties).unwrap_or_else(|_| "{}".into());
    match plugin.check_rollout(&policy.policy_type, &properties) {
        Ok(found) => found
            .into_iter()
            .map(|d| {
                let path = if d.path.is_empty() {
                    properties_path.clone()
                } else {
                    format!("{properties_path}.{}", d.path)
                };
                from_plugin(d, path, plugin.name())
            })
            .collect(),
        Err(e) => vec![plugin_failed(&properties_path, &e.to_string())],
    }
}
