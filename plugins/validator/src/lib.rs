//! The built-in manifest validator: wadm's rules for an OAM application, each finding with
//! the path of the offending field, a message and a hint.
//!
//! It checks what one manifest alone tells: names, versions, duplicate components, ids and
//! links, link targets, image versus shared application. What needs the running controller
//! (is a trait type handled by a loaded plugin? do a trait's properties fit its scaler?) is
//! checked by the controller and by each scaler's `check`, so that this plugin never has to
//! know the schema of a trait it does not own.

use std::collections::BTreeMap;

use serde_json::Value;
use trellis_sdk::suggest::closest;
use trellis_sdk::{path, Diagnostic, PluginInfo, Validator};

/// Trait types that make a component run: a component without one is deployed but never
/// started, which is rarely what its author meant.
const RUNNING_TRAITS: &[&str] = &["spreadscaler", "daemonscaler"];

pub struct ManifestValidator;

impl Validator for ManifestValidator {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "manifest-validator".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            trait_types: Vec::new(),
            description: "wadm's manifest rules: names, versions, duplicates, link targets, \
                          image or shared application"
                .into(),
        }
    }

    fn validate(manifest: &Value) -> Vec<Diagnostic> {
        let mut found = Vec::new();
        check_metadata(manifest, &mut found);
        let components = manifest["spec"]["components"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        check_components(components, &mut found);
        check_links(components, &mut found);
        found
    }
}

trellis_sdk::export_validator!(ManifestValidator);

/// Whether a name is made of letters, digits, `-` and `_` (what wadm accepts, and what is safe
/// in a NATS subject).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn check_metadata(manifest: &Value, found: &mut Vec<Diagnostic>) {
    match manifest["metadata"]["name"].as_str() {
        None | Some("") => found.push(Diagnostic::error(
            "metadata.name",
            "the application has no name",
            "set metadata.name, e.g. `name: my-app`",
        )),
        Some(name) if !valid_name(name) => found.push(Diagnostic::error(
            "metadata.name",
            format!("application name '{name}' may only hold letters, digits, '-' and '_'"),
            format!("e.g. `name: {}`", sanitized(name)),
        )),
        Some(_) => {}
    }
    let version = &manifest["metadata"]["annotations"]["version"];
    if version.as_str() == Some("latest") {
        found.push(Diagnostic::error(
            "metadata.annotations.version",
            "'latest' is not a version: it names whatever was put last",
            "give a version of your own, e.g. `version: v1.0.0`, or leave it out to get a \
             generated one",
        ));
    }
}

fn sanitized(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn check_components(components: &[Value], found: &mut Vec<Diagnostic>) {
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, component) in components.iter().enumerate() {
        let at = path::component(i);
        let name = component["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            found.push(Diagnostic::error(
                format!("{at}.name"),
                "the component has no name",
                "give every component a name that is unique in the application",
            ));
        } else if let Some(first) = names.insert(name, i) {
            names.insert(name, first);
            found.push(Diagnostic::error(
                format!("{at}.name"),
                format!("component name '{name}' is already used by spec.components[{first}]"),
                "component names must be unique in an application: rename one",
            ));
        }
        if let Some(id) = component["properties"]["id"].as_str() {
            if let Some(first) = ids.insert(id, i) {
                ids.insert(id, first);
                found.push(Diagnostic::error(
                    format!("{at}.properties.id"),
                    format!("component id '{id}' is already used by spec.components[{first}]"),
                    "ids are lattice-wide: give each component its own, or leave `id` out to \
                     get `{app}-{name}`",
                ));
            }
        }
        let image = component["properties"]["image"].as_str();
        let shared = component["properties"].get("application");
        match (image, shared) {
            (Some(_), Some(_)) => found.push(Diagnostic::error(
                format!("{at}.properties"),
                format!("component '{name}' has both an image and a shared application"),
                "keep `image` to run your own code, or `application` to use a component of \
                 another app, not both",
            )),
            (None, None) => found.push(Diagnostic::error(
                format!("{at}.properties.image"),
                format!("component '{name}' has neither an image nor a shared application"),
                "set `image: file://…` (relative to the manifest) or an OCI reference",
            )),
            _ => {}
        }
        let traits = component["traits"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let runs = traits
            .iter()
            .any(|t| RUNNING_TRAITS.contains(&t["type"].as_str().unwrap_or_default()));
        if !runs && shared.is_none() && image.is_some() {
            found.push(Diagnostic::warning(
                at.clone(),
                format!(
                    "component '{name}' has no spreadscaler or daemonscaler: nothing will run it"
                ),
                "add a trait, e.g. `- type: spreadscaler` with `properties: {instances: 1}`",
            ));
        }
    }
}

/// A link's slot: one link per source, WIT namespace, package and link name.
fn link_slot(properties: &Value) -> (String, String, String) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let name = properties["name"].as_str().unwrap_or("default").to_string();
    (
        text(&properties["namespace"]),
        text(&properties["package"]),
        name,
    )
}

fn check_links(components: &[Value], found: &mut Vec<Diagnostic>) {
    let names: Vec<&str> = components
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    // A set for the lookups: one per link, so a list would make large apps quadratic.
    let known: std::collections::BTreeSet<&str> = names.iter().copied().collect();
    for (i, component) in components.iter().enumerate() {
        let mut slots: BTreeMap<(String, String, String), usize> = BTreeMap::new();
        let traits = component["traits"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (j, t) in traits.iter().enumerate() {
            if t["type"].as_str() != Some("link") {
                continue;
            }
            let at = path::trait_(i, j);
            let properties = &t["properties"];
            let (target, target_path) = match &properties["target"] {
                Value::String(name) => (Some(name.as_str()), "target"),
                other => (other["name"].as_str(), "target.name"),
            };
            if let Some(target) = target {
                if !known.contains(target) {
                    found.push(Diagnostic::error(
                        format!("{at}.properties.{target_path}"),
                        format!("link target '{target}' is not a component of this application"),
                        closest(target, &names).map_or_else(
                            || format!("name one of: {}", names.join(", ")),
                            |c| format!("did you mean '{c}'?"),
                        ),
                    ));
                }
            }
            let slot = link_slot(properties);
            if let Some(&first) = slots.get(&slot) {
                found.push(Diagnostic::error(
                    at.clone(),
                    format!(
                        "duplicate link: {}:{} named '{}' is already linked by traits[{first}] of \
                         this component",
                        slot.0, slot.1, slot.2
                    ),
                    "a component has one link per WIT package and name: remove one, or give \
                     them different `name`s",
                ));
            } else {
                slots.insert(slot, j);
            }
        }
    }
}

#[cfg(test)]
mod tests;
