//! The deployed apps of a lattice, as the manifest store's watch shows them: each app's
//! deployed manifest, which apps declare a component or provider id (so that an event reaches
//! only their scalers), the scalers that left and must be cleaned up, the apps just
//! undeployed whose status must say so, and what the sweep needs: every stored app, whether the
//! watch has delivered the whole store yet, and the apps the last sweep found running orphans.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use async_nats::jetstream::kv;
use trellis_lattice::Manifest;

use super::planning::{cleanup_after, scaler_keys, Cleanup, ScalerKey};
use crate::ownership::Ownership;
use crate::store::StoredApp;

#[derive(Default)]
pub(crate) struct DeployedApps {
    /// Deployed apps: name → the manifest of the deployed version.
    pub manifests: BTreeMap<String, Manifest>,
    /// Component and provider ids → the deployed apps that declare them, so an event about
    /// one reaches only the scalers of those apps.
    apps_of_id: HashMap<String, BTreeSet<String>>,
    /// Scalers that left since the last pass (an undeploy, or a version that dropped them),
    /// whose cleanup must run.
    pub to_clean: Vec<Cleanup>,
    /// Apps undeployed since the last pass, whose status must say so.
    pub undeployed: BTreeSet<String>,
    /// Every app in the manifest store, deployed or not.
    stored: BTreeMap<String, Stored>,
    /// Whether the watch has delivered every entry the store held when it opened. Until then
    /// any app may look undeployed or missing, so nothing may be swept.
    store_read: bool,
    /// Apps the last sweep found instances of to stop: they need an owner to stop them.
    pub orphaned: BTreeSet<String>,
    /// Apps with a rollout under way: their store entry and its revision, from which their
    /// owner takes the next step (`crate::rollout`).
    pub rolling: BTreeMap<String, (StoredApp, u64)>,
}

/// What the manifest store says of a stored app, for the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Deployed, or undeployed with its instances to be removed.
    Managed,
    /// Undeployed non-destructively: the controller leaves what it runs alone.
    LeftRunning,
    /// An entry this controller cannot read (e.g. written by a newer one): nothing is known of
    /// it, so nothing of it is removed.
    Unreadable,
}

impl DeployedApps {
    /// Takes a change of the manifest store. Returns whether the app has a deployed version now.
    pub fn on_manifest(&mut self, entry: kv::Entry) -> bool {
        // The last of the values the store held when the watch opened (or a change after).
        if entry.delta == 0 {
            self.store_read = true;
        }
        let app: Option<StoredApp> = match entry.operation {
            kv::Operation::Put => serde_json::from_slice(&entry.value).ok(),
            _ => None,
        };
        let left_running = app.as_ref().is_some_and(StoredApp::left_running);
        let rolling = app.clone().filter(|a| a.active_rollout().is_some());
        let deployed = app.as_ref().and_then(StoredApp::deployed_manifest);
        let stored = match (&entry.operation, &app) {
            (kv::Operation::Put, Some(_)) if left_running => Some(Stored::LeftRunning),
            (kv::Operation::Put, Some(_)) => Some(Stored::Managed),
            (kv::Operation::Put, None) => {
                tracing::warn!(app = %entry.key, revision = entry.revision, "unreadable manifest store entry; the sweep leaves the app's instances alone");
                Some(Stored::Unreadable)
            }
            _ => None,
        };
        let app = entry.key;
        match rolling.filter(|_| stored == Some(Stored::Managed)) {
            Some(stored_app) => self
                .rolling
                .insert(app.clone(), (stored_app, entry.revision)),
            None => self.rolling.remove(&app),
        };
        match stored {
            Some(stored) => self.stored.insert(app.clone(), stored),
            None => self.stored.remove(&app),
        };
        if stored == Some(Stored::Unreadable) {
            // Junk over an app's entry says nothing about what should run: keep managing what
            // the last readable value said, rather than take it for an undeploy.
            return self.manifests.contains_key(&app);
        }
        match deployed {
            Some(manifest) => {
                // A scaler of the version now deployed must not be cleaned up, whatever left
                // before this pass.
                let kept: BTreeSet<ScalerKey> = scaler_keys(&manifest);
                for cleanup in self.to_clean.iter_mut().filter(|c| c.app == app) {
                    cleanup.scalers.retain(|id| !kept.contains(id));
                }
                self.to_clean.retain(|c| !c.scalers.is_empty());
                self.undeployed.remove(&app);
                self.index(&app, &manifest, true);
                if let Some(previous) = self.manifests.insert(app.clone(), manifest) {
                    self.index(&app, &previous, false);
                    let current = self.manifests[&app].clone();
                    self.index(&app, &current, true);
                    self.to_clean
                        .extend(cleanup_after(&app, previous, Some(&current)));
                }
                true
            }
            None => {
                if let Some(previous) = self.manifests.remove(&app) {
                    self.index(&app, &previous, false);
                    // A non-destructive undeploy stops managing and removes nothing.
                    if !left_running {
                        self.to_clean.extend(cleanup_after(&app, previous, None));
                    }
                    self.undeployed.insert(app);
                }
                false
            }
        }
    }

    fn index(&mut self, app: &str, manifest: &Manifest, add: bool) {
        for component in &manifest.spec.components {
            let id = manifest.component_id(component);
            if add {
                self.apps_of_id
                    .entry(id)
                    .or_default()
                    .insert(app.to_string());
            } else if let Some(apps) = self.apps_of_id.get_mut(&id) {
                apps.remove(app);
                if apps.is_empty() {
                    self.apps_of_id.remove(&id);
                }
            }
        }
    }

    /// The deployed apps that declare this component or provider id.
    pub fn apps_of(&self, id: &str) -> impl Iterator<Item = &String> {
        self.apps_of_id.get(id).into_iter().flatten()
    }

    /// The apps that need an owner: deployed ones, undeployed ones with cleanup or a status
    /// still to publish, and those with orphaned instances to stop.
    pub fn wanted(&self) -> Vec<String> {
        let mut wanted: BTreeSet<String> = self.manifests.keys().cloned().collect();
        wanted.extend(self.to_clean.iter().map(|c| c.app.clone()));
        wanted.extend(self.undeployed.iter().cloned());
        wanted.extend(self.orphaned.iter().cloned());
        wanted.into_iter().collect()
    }

    /// What the manifest store says of `app`; `None`: it is not stored.
    pub fn stored(&self, app: &str) -> Option<Stored> {
        self.stored.get(app).copied()
    }

    /// Whether the watch has delivered every entry the store held when it opened.
    pub fn store_read(&self) -> bool {
        self.store_read
    }

    /// The store was empty when its watch opened: an empty bucket delivers nothing, so no
    /// entry would ever say the watch is caught up.
    pub fn on_empty_store(&mut self) {
        self.store_read = true;
    }

    /// The cleanups this controller runs now, taken out: those of the apps it owns. Cleanups run
    /// at the owner; others forget them once someone else owns the app.
    pub fn take_cleanups(&mut self, ownership: &Ownership, now: Instant) -> Vec<Cleanup> {
        let (to_clean, kept): (Vec<Cleanup>, Vec<Cleanup>) = std::mem::take(&mut self.to_clean)
            .into_iter()
            .partition(|c| ownership.owns(&c.app, now));
        self.to_clean = kept
            .into_iter()
            .filter(|c| {
                ownership
                    .owner_of(&c.app)
                    .is_none_or(|o| o == ownership.id())
            })
            .collect();
        to_clean
    }

    /// What deploying `manifest` would clean up: the scalers the deployed version of its app has
    /// and it drops.
    pub fn cleanup_for(&self, manifest: &Manifest) -> Option<Cleanup> {
        let current = self.manifests.get(manifest.name())?;
        cleanup_after(manifest.name(), current.clone(), Some(manifest))
    }
}

/// Manifest store entries built by hand, for the tests of this module and of the sweep.
#[cfg(test)]
pub(crate) mod testing {
    use async_nats::jetstream::kv;
    use serde_json::{json, Value};

    /// A manifest (as JSON) of app `name` at `version`: component `web` (id `{name}-web`) and,
    /// with `http`, the provider `http` (id `{name}-http`).
    pub fn two_part_app(name: &str, version: &str, http: bool) -> Value {
        let mut components = vec![json!({
            "name": "web",
            "type": "component",
            "properties": { "image": "file:///web.wasm" },
            "traits": [{ "type": "spreadscaler", "properties": { "instances": 1 } }],
        })];
        if http {
            components.push(json!({
                "name": "http",
                "type": "capability",
                "properties": { "image": "builtin:http-server" },
            }));
        }
        json!({
            "apiVersion": "core.oam.dev/v1beta1",
            "kind": "Application",
            "metadata": { "name": name, "annotations": { "version": version } },
            "spec": { "components": components },
        })
    }

    /// A stored app (as JSON, as the store writes it) with these versions, `deployed`, and
    /// when undeployed, a last undeploy that is non-destructive with `left_running`.
    pub fn stored_app(versions: &[Value], deployed: Option<&str>, left_running: bool) -> Value {
        let at = "2025-01-01T00:00:00Z";
        let versions: Vec<Value> = versions
            .iter()
            .map(|m| {
                let version = &m["metadata"]["annotations"]["version"];
                json!({ "version": version, "manifest": m, "put_at": at })
            })
            .collect();
        let mut history = vec![json!({ "version": versions[0]["version"], "at": at })];
        if deployed.is_none() {
            history.push(json!({ "version": null, "at": at, "non_destructive": left_running }));
        }
        json!({ "versions": versions, "deployed": deployed, "history": history })
    }

    /// The watch's entry for `key`: a put of `value`, or a delete when `None`; `delta` entries
    /// of the store's initial values follow it.
    pub fn entry(key: &str, value: Option<Value>, delta: u64) -> kv::Entry {
        kv::Entry {
            bucket: "TRELLIS_MANIFESTS_test".into(),
            key: key.into(),
            operation: match value {
                Some(_) => kv::Operation::Put,
                None => kv::Operation::Delete,
            },
            value: value
                .map(|v| serde_json::to_vec(&v).unwrap().into())
                .unwrap_or_default(),
            revision: 1,
            delta,
            created: time::OffsetDateTime::UNIX_EPOCH,
            seen_current: delta == 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{entry, stored_app, two_part_app};
    use super::*;

    #[test]
    fn the_store_is_read_once_the_last_initial_entry_arrives() {
        let mut apps = DeployedApps::default();
        let shop = stored_app(&[two_part_app("shop", "v1", false)], Some("v1"), false);
        apps.on_manifest(entry("shop", Some(shop.clone()), 2));
        apps.on_manifest(entry("web", Some(shop.clone()), 1));
        assert!(!apps.store_read());
        apps.on_manifest(entry("api", Some(shop), 0));
        assert!(apps.store_read());
    }

    #[test]
    fn stored_apps_are_remembered_with_how_they_were_undeployed() {
        let mut apps = DeployedApps::default();
        let v1 = [two_part_app("shop", "v1", false)];
        apps.on_manifest(entry("shop", Some(stored_app(&v1, Some("v1"), false)), 0));
        assert_eq!(apps.stored("shop"), Some(Stored::Managed));
        apps.on_manifest(entry("shop", Some(stored_app(&v1, None, true)), 0));
        assert_eq!(apps.stored("shop"), Some(Stored::LeftRunning));
        assert!(
            apps.to_clean.is_empty(),
            "a non-destructive undeploy cleans nothing"
        );
        apps.on_manifest(entry("shop", None, 0));
        assert_eq!(apps.stored("shop"), None);

        apps.orphaned.insert("gone".into());
        assert_eq!(apps.wanted(), ["gone", "shop"]);
    }
}
