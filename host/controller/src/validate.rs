//! Manifest validation: what `put` refuses and `trellis app validate` prints.
//!
//! Three sources of findings, in this order:
//! 1. the controller itself: the format, the name and version the store relies on, and trait
//!    types no loaded plugin handles (only the controller knows what is loaded);
//! 2. each trait's scaler plugin, through its `check`: the trait's properties against the
//!    schema only that plugin knows; likewise the rollout plugin of a `rollout` policy
//!    (`crate::rollout::check`);
//! 3. every loaded validator plugin, on the whole manifest.
//!
//! A plugin that cannot check (trap, timeout, nonsense, a busy pool) fails the validation
//! closed: its failure is an error that names the plugin, and `put` refuses the manifest
//! rather than storing one nobody checked. An operator who wants the lattice to take
//! manifests without that plugin removes it from the plugin folder
//! (docs/decisions/0010-bad-input.md says why).
//!
//! What plugins return is bounded like any input (`trellis_runtime::output` cuts each text
//! and counts), and a validation returns at most [`limits::MAX_DIAGNOSTICS`] findings.

use trellis_lattice::api::{Diagnostic, Severity};
use trellis_lattice::limits;
use trellis_lattice::manifest::{APPLICATION_KIND, OAM_VERSION};
use trellis_lattice::Manifest;
use trellis_runtime::bindings;
use trellis_runtime::Runtime;
use trellis_sdk::suggest::closest;

use crate::reconciler::planning::scaler_slots;

const CONTROLLER: &str = "controller";

/// Parses and validates manifest text. A manifest that does not parse gives one error.
pub fn validate_text(runtime: &Runtime, text: &str) -> Vec<Diagnostic> {
    match Manifest::parse(text) {
        Ok(manifest) => validate(runtime, &manifest),
        Err(e) => vec![Diagnostic {
            severity: Severity::Error,
            path: String::new(),
            message: e.to_string(),
            hint: "fix the syntax at the line given; `trellis app validate FILE` checks a file \
                   without putting it"
                .into(),
            source: CONTROLLER.into(),
        }],
    }
}

/// Every finding about a parsed manifest, errors first, at most one error per place.
pub fn validate(runtime: &Runtime, manifest: &Manifest) -> Vec<Diagnostic> {
    let mut found = controller_checks(runtime, manifest);
    found.extend(scaler_checks(runtime, manifest));
    found.extend(crate::rollout::check::policy(runtime, manifest));
    found.extend(validator_checks(runtime, manifest));
    let mut seen = std::collections::BTreeSet::new();
    found.retain(|d| seen.insert((d.severity, d.path.clone(), d.message.clone())));
    // Several checks may see the same fault (the controller and a validator both check the
    // name; a link scaler and a validator both check link targets): keep one error per place,
    // the first found: the controller's, then the owning scaler's, then a validator's.
    let mut errors_at = std::collections::BTreeSet::new();
    found.retain(|d| d.severity != Severity::Error || errors_at.insert(d.path.clone()));
    found.sort_by_key(|d| d.severity);
    if found.len() > limits::MAX_DIAGNOSTICS {
        let left_out = found.len() - (limits::MAX_DIAGNOSTICS - 1);
        found.truncate(limits::MAX_DIAGNOSTICS - 1);
        found.push(Diagnostic {
            severity: Severity::Info,
            path: String::new(),
            message: format!(
                "{left_out} more findings are not shown (at most {} are)",
                limits::MAX_DIAGNOSTICS
            ),
            hint: "fix the ones above and validate again".into(),
            source: CONTROLLER.into(),
        });
    }
    found
}

/// Whether any finding is an error.
pub fn has_errors(found: &[Diagnostic]) -> bool {
    found.iter().any(|d| d.severity == Severity::Error)
}

/// The errors as one message, one per line, for `put`'s refusal.
pub fn describe_errors(found: &[Diagnostic]) -> String {
    let errors: Vec<String> = found
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect();
    format!(
        "the manifest has {} error{}:\n{}",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" },
        errors.join("\n")
    )
}

pub(crate) fn error(
    path: impl Into<String>,
    message: String,
    hint: impl Into<String>,
) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        path: path.into(),
        message,
        hint: hint.into(),
        source: CONTROLLER.into(),
    }
}

fn controller_checks(runtime: &Runtime, manifest: &Manifest) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    if manifest.api_version != OAM_VERSION {
        found.push(error(
            "apiVersion",
            format!(
                "apiVersion is `{}`; trellis reads `{OAM_VERSION}`",
                manifest.api_version
            ),
            format!("set `apiVersion: {OAM_VERSION}`"),
        ));
    }
    if manifest.kind != APPLICATION_KIND {
        found.push(error(
            "kind",
            format!(
                "kind is `{}`; trellis reads `{APPLICATION_KIND}`",
                manifest.kind
            ),
            format!("set `kind: {APPLICATION_KIND}`"),
        ));
    }
    // The store keys apps by name and NATS subjects carry it: it must be subject-safe even
    // when no validator plugin is loaded. So must ids (KV keys on hosts) and config names
    // (control-interface subjects).
    if let Some(problem) = unsafe_name(manifest.name()) {
        found.push(error(
            "metadata.name",
            format!("application name {problem}"),
            "e.g. `name: my-app`",
        ));
    }
    for (ci, component) in manifest.spec.components.iter().enumerate() {
        if let Some(problem) = component.properties.id.as_deref().and_then(unsafe_name) {
            found.push(error(
                format!("spec.components[{ci}].properties.id"),
                format!("component id {problem}"),
                "e.g. `id: my-app-http`, or leave it out to get `{app}-{name}`",
            ));
        }
        if component.name.is_empty() || component.name.len() > limits::MAX_NAME_BYTES {
            found.push(error(
                format!("spec.components[{ci}].name"),
                format!(
                    "a component name must have 1 to {} bytes",
                    limits::MAX_NAME_BYTES
                ),
                "e.g. `name: http`",
            ));
        }
        for (i, config) in component.properties.config.iter().enumerate() {
            if let Some(problem) = unsafe_name(&config.name) {
                found.push(error(
                    format!("spec.components[{ci}].properties.config[{i}].name"),
                    format!("config name {problem}"),
                    "e.g. `name: my-app-settings`",
                ));
            }
        }
    }
    if manifest.version() == "latest" {
        found.push(error(
            "metadata.annotations.version",
            "`latest` is not a version: the API uses it to mean the newest one".into(),
            "name a version such as v0.1.0, or leave it out to get a generated one",
        ));
    }
    if let Some(policy) = manifest.placement_policy() {
        let plugins = runtime.plugins();
        if !plugins.policies.contains_key(policy) {
            let known: Vec<String> = plugins.policies.keys().cloned().collect();
            let hint = match closest(policy, &known) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!(
                    "put a placement plugin that provides it in {} first",
                    runtime.plugin_dir().display()
                ),
            };
            found.push(error(
                format!(
                    "metadata.annotations.{}",
                    trellis_lattice::manifest::PLACEMENT_ANNOTATION
                ),
                format!(
                    "unknown placement policy `{policy}`; loaded policies: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
                hint,
            ));
        }
    }
    let known = runtime.plugins().trait_types();
    for (ci, component) in manifest.spec.components.iter().enumerate() {
        for (ti, t) in component.traits.iter().flatten().enumerate() {
            if known.contains(&t.trait_type) {
                continue;
            }
            let loaded = if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            };
            let hint = match closest(&t.trait_type, &known) {
                Some(c) => format!(
                    "did you mean `{c}`? To use a custom trait, put its plugin in {} first",
                    runtime.plugin_dir().display()
                ),
                None => format!(
                    "to use a custom trait, put its plugin in {} first",
                    runtime.plugin_dir().display()
                ),
            };
            found.push(error(
                format!("spec.components[{ci}].traits[{ti}].type"),
                format!(
                    "unknown trait type `{}`; the loaded plugins handle: {loaded}",
                    t.trait_type
                ),
                hint,
            ));
        }
    }
    found
}

/// Why `name` cannot be a subject token or a KV key, if it cannot.
fn unsafe_name(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > limits::MAX_NAME_BYTES {
        return Some(format!(
            "`{name}` must have 1 to {} bytes",
            limits::MAX_NAME_BYTES
        ));
    }
    let safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    (!name.chars().all(safe))
        .then(|| format!("`{name}` may only hold letters, digits, `-` and `_`"))
}

fn scaler_checks(runtime: &Runtime, manifest: &Manifest) -> Vec<Diagnostic> {
    let plugins = runtime.plugins();
    let mut found = Vec::new();
    let scalers = scaler_slots(manifest);
    for slot in &scalers.slots {
        let Some(plugin) = plugins.scaler_for(&slot.trait_type) else {
            continue; // reported above as an unknown trait type
        };
        match plugin.check(&scalers.context(slot, None)) {
            Ok(diagnostics) => found.extend(diagnostics.into_iter().map(|d| {
                let path = if d.path.is_empty() {
                    slot.properties_path.clone()
                } else if d.path.starts_with('[') {
                    format!("{}{}", slot.properties_path, d.path)
                } else {
                    format!("{}.{}", slot.properties_path, d.path)
                };
                from_plugin(d, path, plugin.name())
            })),
            Err(e) => found.push(plugin_failed(&slot.properties_path, &e.to_string())),
        }
    }
    found
}

fn validator_checks(runtime: &Runtime, manifest: &Manifest) -> Vec<Diagnostic> {
    let plugins = runtime.plugins();
    let json = match serde_json::to_string(manifest) {
        Ok(json) => json,
        Err(e) => {
            return vec![plugin_failed(
                "",
                &format!("cannot encode the manifest: {e}"),
            )]
        }
    };
    let mut found = Vec::new();
    for validator in &plugins.validators {
        match validator.validate(&json) {
            Ok(diagnostics) => found.extend(diagnostics.into_iter().map(|d| {
                let path = d.path.clone();
                from_plugin(d, path, validator.name())
            })),
            Err(e) => found.push(plugin_failed("", &e.to_string())),
        }
    }
    found
}

pub(crate) fn from_plugin(d: bindings::Diagnostic, path: String, plugin: &str) -> Diagnostic {
    Diagnostic {
        severity: match d.severity {
            bindings::Severity::Error => Severity::Error,
            bindings::Severity::Warning => Severity::Warning,
            bindings::Severity::Info => Severity::Info,
        },
        path,
        message: d.message,
        hint: d.hint,
        source: plugin.to_string(),
    }
}

/// A check that could not run: an error, so that nothing unchecked is stored.
pub fn plugin_failed(path: &str, reason: &str) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        path: path.into(),
        message: format!("could not be checked: {reason}"),
        hint: "nothing unchecked is stored: try again, or fix or remove the plugin \
               (`trellis plugin list` shows its failures)"
            .into(),
        source: CONTROLLER.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diagnostic(severity: Severity, path: &str, source: &str) -> Diagnostic {
        Diagnostic {
            severity,
            path: path.into(),
            message: format!("{source} says"),
            hint: String::new(),
            source: source.into(),
        }
    }

    #[test]
    fn describe_errors_lists_each_on_a_line() {
        let found = vec![
            diagnostic(Severity::Error, "metadata.name", "controller"),
            diagnostic(Severity::Warning, "spec", "v"),
            diagnostic(Severity::Error, "", "v"),
        ];
        assert!(has_errors(&found));
        assert_eq!(
            describe_errors(&found),
            "the manifest has 2 errors:\nerror: metadata.name: controller says\nerror: v says"
        );
    }
}
