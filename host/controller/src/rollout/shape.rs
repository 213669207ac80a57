//! What an app runs during a rollout, as one manifest: the old version's components (renamed
//! `{name}@{version}`, keeping their ids) beside the new version's (with ids and config names
//! of their own, [`versioned`]), each scaled to its share of the current step, and every HTTP
//! link of either given that version's share of requests as a `weight` in a config of its
//! own.
//!
//! A provider whose image and configs are the same in both versions is shared: it keeps the
//! old version's id and placement, and carries the new version's links beside the old's
//! (under link names of their own). So an HTTP server serves both versions from one listener,
//! the node splits its requests by the links' weights, and it never moves. The reconcile loop plans this manifest like any other, so a step is carried out (and
//! shown by `plan` and `status`) by the same scalers as a deploy.
//!
//! Pure: the stored rollout and the two stored manifests say everything, so any controller
//! derives the same manifest from the store (decision 0014).

use std::collections::BTreeMap;

use serde_json::{json, Value};
use trellis_lattice::api::{RolloutTarget, ROLLOUT_POLICY};
use trellis_lattice::manifest::{Component, ComponentType};
use trellis_lattice::Manifest;

/// The trait type of links (their targets name components, renamed with them).
const LINK: &str = "link";

/// A link's name when its properties give none (as the link scaler takes it).
const DEFAULT_LINK_NAME: &str = "default";

/// Trait types whose `spread` a host split replaces (their spreads take label requirements).
const SPREADING: &[&str] = &["spreadscaler", "daemonscaler"];

/// The properties of scaling traits that count instances: a version's share scales them.
const COUNTS: &[&str] = &["instances", "min_instances", "max_instances"];

/// The config key a node reads a link's share of requests from (see the node's HTTP server).
pub const WEIGHT_KEY: &str = "weight";

/// A version as it appears in ids and config names: lowercase letters and digits, anything
/// else `_` (as wadm normalises ids).
pub fn slug(version: &str) -> String {
    version
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// `new` as it runs beside `old` and after its rollout: each component's id, and each config
/// it defines (with properties), suffixed with the version, so that nothing of it is shared
/// with the version it replaces; except a provider the same in both (image and configs),
/// which keeps `old`'s id, its links taking names of their own. Components of another app
/// (`application`) are left as they are.
pub fn versioned(new: &Manifest, old: &Manifest) -> Manifest {
    let suffix = slug(new.version());
    let mut out = new.clone();
    for (component, original) in out.spec.components.iter_mut().zip(&new.spec.components) {
        if component.properties.application.is_some() {
            continue;
        }
        let shared = shared_provider(component, old);
        match &shared {
            Some(id) => component.properties.id = Some(id.clone()),
            None => {
                component.properties.id = Some(format!("{}-{suffix}", new.component_id(original)));
                for config in &mut component.properties.config {
                    if config.properties.is_some() {
                        config.name = format!("{}-{suffix}", config.name);
                    }
                }
            }
        }
        for t in component.traits.iter_mut().flatten() {
            if t.trait_type == LINK {
                if shared.is_some() {
                    rename_link(&mut t.properties, &suffix);
                }
                for config in link_configs(&mut t.properties) {
                    if config.get("properties").is_some_and(|p| !p.is_null()) {
                        if let Some(Value::String(name)) = config.get_mut("name") {
                            *name = format!("{name}-{suffix}");
                        }
                    }
                }
            }
        }
    }
    out
}

/// The id of `old`'s provider that `component` can share: one of the same name, image and
/// configs.
fn shared_provider(component: &Component, old: &Manifest) -> Option<String> {
    if component.component_type != ComponentType::Capability {
        return None;
    }
    let same = old.spec.components.iter().find(|c| {
        c.name == component.name
            && c.component_type == ComponentType::Capability
            && c.properties.application.is_none()
            && c.properties.image == component.properties.image
            && c.properties.config == component.properties.config
    })?;
    Some(old.component_id(same))
}

/// Gives a link of a shared provider a name of its own (`{name}-{version}`), so that it
/// stands beside the old version's link from the same provider.
fn rename_link(properties: &mut Value, suffix: &str) {
    if let Value::Object(map) = properties {
        let name = map
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_LINK_NAME)
            .to_string();
        map.insert("name".into(), json!(format!("{name}-{suffix}")));
    }
}

/// The one manifest an app runs at a step of its rollout from `old` (the deployed version's
/// manifest as it runs) to `new` (its [`versioned`] form): see the module's documentation.
pub fn during(old: &Manifest, new: &Manifest, target: &RolloutTarget) -> Manifest {
    let mut out = new.clone();
    let old_names: BTreeMap<&str, String> = old
        .spec
        .components
        .iter()
        .map(|c| (c.name.as_str(), format!("{}@{}", c.name, old.version())))
        .collect();
    let split = target.hosts.as_ref();
    let mut components = Vec::with_capacity(old.spec.components.len() + new.spec.components.len());
    for component in &old.spec.components {
        let mut c = component.clone();
        c.properties.id = Some(old.component_id(component));
        c.name = old_names[component.name.as_str()].clone();
        for t in c.traits.iter_mut().flatten() {
            if t.trait_type == LINK {
                rename_target(&mut t.properties, &old_names);
            }
        }
        let values = split.map(|s| (s.label.as_str(), s.old_values.as_slice()));
        share(&mut c, target.old_instances, values);
        weigh(&mut c, old, 100 - target.traffic.min(100));
        components.push(c);
    }
    let old_ids: Vec<String> = old
        .spec
        .components
        .iter()
        .map(|c| old.component_id(c))
        .collect();
    for component in &new.spec.components {
        let mut c = component.clone();
        if old_ids.contains(&new.component_id(component)) {
            // A shared provider: the old version's copy places it; this one only adds links.
            if let Some(traits) = c.traits.as_mut() {
                traits.retain(|t| t.trait_type == LINK);
            }
        }
        let values = split.map(|s| (s.label.as_str(), s.new_values.as_slice()));
        share(&mut c, target.new_instances, values);
        weigh(&mut c, new, target.traffic.min(100));
        components.push(c);
    }
    out.spec.components = components;
    // The app is at the deployed version until the rollout is done: its status says so.
    out.metadata.annotations.insert(
        trellis_lattice::manifest::VERSION_ANNOTATION.into(),
        old.version().into(),
    );
    // The rollout's own policy is the controller's business, not a scaler's.
    out.spec.policies.retain(|p| p.name != ROLLOUT_POLICY);
    out
}

/// `percent` of `instances`, rounded, and at least one when the share is not zero.
pub fn scaled(instances: u64, percent: u8) -> u64 {
    if percent == 0 || instances == 0 {
        return 0;
    }
    ((instances * u64::from(percent.min(100)) + 50) / 100).max(1)
}

/// Scales a component's scaling traits to `percent` of what they ask (removing them at 0, or
/// when a host split leaves the version no label value), and puts them on the split's hosts.
/// Providers and other apps' components keep their traits: both versions' providers run in
/// full while both versions do.
fn share(component: &mut Component, percent: u8, split: Option<(&str, &[String])>) {
    if component.component_type != ComponentType::Component
        || component.properties.application.is_some()
    {
        return;
    }
    let Some(traits) = component.traits.as_mut() else {
        return;
    };
    let none_left = percent == 0 || split.is_some_and(|(_, values)| values.is_empty());
    traits.retain_mut(|t| {
        if t.trait_type == LINK {
            return true;
        }
        if none_left {
            return false;
        }
        if let Value::Object(properties) = &mut t.properties {
            for key in COUNTS {
                if let Some(n) = properties.get(*key).and_then(Value::as_u64) {
                    properties.insert((*key).into(), json!(scaled(n, percent)));
                }
            }
            if let (Some((label, values)), true) =
                (split, SPREADING.contains(&t.trait_type.as_str()))
            {
                let spread: Vec<Value> = values
                    .iter()
                    .map(|v| json!({ "name": v, "requirements": { label: v } }))
                    .collect();
                properties.insert("spread".into(), Value::Array(spread));
            }
        }
        true
    });
}

/// Gives each HTTP link from this component (an HTTP server provider's) the share `weight`
/// of requests, in a config named for the app and version.
fn weigh(component: &mut Component, manifest: &Manifest, weight: u8) {
    let name = weight_config(manifest.name(), manifest.version());
    for t in component.traits.iter_mut().flatten() {
        if t.trait_type != LINK || !is_http_incoming(&t.properties) {
            continue;
        }
        let config = json!({ "name": name, "properties": { WEIGHT_KEY: weight.to_string() } });
        let Value::Object(properties) = &mut t.properties else {
            continue;
        };
        match properties.get_mut("source_config") {
            Some(Value::Array(list)) => list.push(config),
            _ => {
                let source = properties
                    .entry("source")
                    .or_insert_with(|| json!({ "config": [] }));
                if let Value::Object(source) = source {
                    match source.entry("config").or_insert_with(|| json!([])) {
                        Value::Array(list) => list.push(config),
                        other => *other = json!([config]),
                    }
                }
            }
        }
    }
}

/// The config holding a version's share of its HTTP links' requests.
pub fn weight_config(app: &str, version: &str) -> String {
    format!("{}-weight-{}", slug(app), slug(version))
}

fn is_http_incoming(properties: &Value) -> bool {
    properties.get("namespace").and_then(Value::as_str) == Some("wasi")
        && properties.get("package").and_then(Value::as_str) == Some("http")
        && properties
            .get("interfaces")
            .and_then(Value::as_array)
            .is_some_and(|i| i.iter().any(|i| i.as_str() == Some("incoming-handler")))
}

/// Points a link at a renamed target (`target: name` or `target: {name}`).
fn rename_target(properties: &mut Value, names: &BTreeMap<&str, String>) {
    let target = match properties.get_mut("target") {
        Some(Value::Object(target)) => target.get_mut("name"),
        other => other,
    };
    if let Some(Value::String(name)) = target {
        if let Some(renamed) = names.get(name.as_str()) {
            *name = renamed.clone();
        }
    }
}

/// Every config entry of a link's properties: `source.config`, `target.config` and the
/// deprecated `source_config` and `target_config`.
fn link_configs(properties: &mut Value) -> impl Iterator<Item = &mut Value> {
    let Value::Object(map) = properties else {
        return Vec::new().into_iter();
    };
    let mut lists = Vec::new();
    for (key, value) in map.iter_mut() {
        match (key.as_str(), value) {
            ("source" | "target", Value::Object(inner)) => {
                if let Some(Value::Array(list)) = inner.get_mut("config") {
                    lists.extend(list.iter_mut());
                }
            }
            ("source_config" | "target_config", Value::Array(list)) => {
                lists.extend(list.iter_mut())
            }
            _ => {}
        }
    }
    lists.into_iter()
}

#[cfg(test)]
mod tests;
