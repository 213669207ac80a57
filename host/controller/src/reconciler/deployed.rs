//! The deployed apps of a lattice, as the manifest store's watch shows them: each app's
//! deployed manifest, which apps declare a component or provider id (so that an event reaches
//! only their scalers), the scalers that left and must be cleaned up, and the apps just
//! undeployed whose status must say so.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use async_nats::jetstream::kv;
use trellis_lattice::Manifest;

use super::planning::{cleanup_after, scaler_ids, Cleanup};
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
}

impl DeployedApps {
    /// Takes a change of the manifest store. Returns whether the app has a deployed version now.
    pub fn on_manifest(&mut self, entry: kv::Entry) -> bool {
        let app: Option<StoredApp> = match entry.operation {
            kv::Operation::Put => serde_json::from_slice(&entry.value).ok(),
            _ => None,
        };
        let left_running = app.as_ref().is_some_and(StoredApp::left_running);
        let deployed = app.as_ref().and_then(|a| a.deployed_manifest().cloned());
        let app = entry.key;
        match deployed {
            Some(manifest) => {
                // A scaler of the version now deployed must not be cleaned up, whatever left
                // before this pass.
                let kept: BTreeSet<String> = scaler_ids(&manifest);
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

    /// The apps that need an owner: deployed ones, and undeployed ones with cleanup or a
    /// status still to publish.
    pub fn wanted(&self) -> Vec<String> {
        let mut wanted: BTreeSet<String> = self.manifests.keys().cloned().collect();
        wanted.extend(self.to_clean.iter().map(|c| c.app.clone()));
        wanted.extend(self.undeployed.iter().cloned());
        wanted.into_iter().collect()
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
