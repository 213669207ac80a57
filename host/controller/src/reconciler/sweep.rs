//! The sweep of orphaned instances: what trellis started for an app and no deployed version of
//! that app declares any more, found in the lattice state alone.
//!
//! Why from state: an undeploy's cleanup is computed from the manifest watch and issued once.
//! When its controller dies before issuing it, or a stop fails, nothing remembers it. The
//! durable record is the manifest store itself (the app is undeployed, deleted, or deployed at
//! a version without that component) plus the annotations trellis puts on what it starts, so
//! comparing the two finds every lost cleanup, after any restart, without storing more.
//!
//! What is never touched: instances without `managed-by: trellis` (wadm's, or started by hand),
//! those of an app undeployed non-destructively, those of an app whose store entry cannot be
//! read, and any instance whose id a deployed app declares (a host runs one instance per id,
//! so stopping it would stop that app's). And nothing at all before the manifest watch has
//! delivered the whole store: until then every app looks undeployed.

use trellis_lattice::annotations;
use trellis_runtime::bindings::{Command, ScaleComponent, StopProvider};

use super::deployed::{DeployedApps, Stored};
use crate::state::LatticeState;

/// The scaler an orphan's stop command names as its origin.
pub(super) const SWEEP_SCALER: &str = "sweep";

/// One instance to stop, and why.
#[derive(Debug, Clone)]
pub(super) struct Orphan {
    pub app: String,
    pub host: String,
    /// The component or provider id.
    pub id: String,
    pub command: Command,
    pub why: String,
}

/// Every instance on the lattice that trellis started for an app and that no deployed version
/// declares, with the command that stops it. Empty until the manifest watch has delivered the
/// whole store.
pub(super) fn orphans(state: &LatticeState, apps: &DeployedApps) -> Vec<Orphan> {
    if !apps.store_read() {
        return Vec::new();
    }
    let mut found = Vec::new();
    for (host_id, host) in &state.hosts {
        let components = host.components.iter().map(|(id, c)| {
            let stop = Command::ScaleComponent(ScaleComponent {
                host_id: host_id.clone(),
                component_id: id.clone(),
                image: c.image.clone(),
                count: 0,
                config: Vec::new(),
            });
            (id, &c.annotations, stop)
        });
        let providers = host.providers.iter().map(|(id, p)| {
            let stop = Command::StopProvider(StopProvider {
                host_id: host_id.clone(),
                provider_id: id.clone(),
            });
            (id, &p.annotations, stop)
        });
        for (id, annotations, command) in components.chain(providers) {
            let Some(app) = managing_app(annotations) else {
                continue;
            };
            if let Some(why) = orphaned(app, id, apps) {
                found.push(Orphan {
                    app: app.to_string(),
                    host: host_id.clone(),
                    id: id.clone(),
                    command,
                    why,
                });
            }
        }
    }
    found
}

/// The app that trellis started an instance for; `None` for anything trellis did not start.
fn managing_app(annotations: &std::collections::BTreeMap<String, String>) -> Option<&str> {
    let ours = annotations.get(annotations::MANAGED_BY).map(String::as_str)
        == Some(annotations::MANAGED_BY_VALUE);
    let app = annotations
        .get(annotations::APP)
        .filter(|a| !a.is_empty())?;
    ours.then_some(app.as_str())
}

/// Why instance `id` of `app` must go, or `None` when it stays.
fn orphaned(app: &str, id: &str, apps: &DeployedApps) -> Option<String> {
    // Declared by a deployed app (this one or another that took the id over): its scalers
    // decide how many run where.
    if apps.apps_of(id).next().is_some() {
        return None;
    }
    if let Some(manifest) = apps.manifests.get(app) {
        return Some(format!(
            "version {} of app {app} is deployed and does not declare {id}",
            manifest.version()
        ));
    }
    match apps.stored(app) {
        None => Some(format!("app {app} is not in the manifest store")),
        Some(Stored::Managed) => Some(format!("app {app} is not deployed")),
        Some(Stored::LeftRunning | Stored::Unreadable) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Instant;

    use super::*;
    use crate::reconciler::deployed::testing::{entry, stored_app, two_part_app};
    use crate::state::{ComponentState, HostState, ProviderState};

    fn ours(app: &str) -> BTreeMap<String, String> {
        [
            (annotations::MANAGED_BY, annotations::MANAGED_BY_VALUE),
            (annotations::APP, app),
            (annotations::SCALER, "spreadscaler-web-0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn wadms(app: &str) -> BTreeMap<String, String> {
        let mut a = ours(app);
        a.insert(annotations::MANAGED_BY.into(), "wadm".into());
        a
    }

    /// Host H1 running these components and providers (id → annotations).
    fn lattice(
        components: &[(&str, BTreeMap<String, String>)],
        providers: &[(&str, BTreeMap<String, String>)],
    ) -> LatticeState {
        let mut host = HostState::new(Instant::now());
        for (id, annotations) in components {
            let c = ComponentState {
                image: format!("file:///{id}.wasm"),
                count: 2,
                annotations: annotations.clone(),
            };
            host.components.insert(id.to_string(), c);
        }
        for (id, annotations) in providers {
            let p = ProviderState {
                image: "builtin:http-server".into(),
                annotations: annotations.clone(),
            };
            host.providers.insert(id.to_string(), p);
        }
        let mut state = LatticeState::default();
        state.hosts.insert("H1".into(), host);
        state
    }

    fn found(state: &LatticeState, apps: &DeployedApps) -> Vec<(String, String)> {
        orphans(state, apps)
            .into_iter()
            .map(|o| (o.app, o.id))
            .collect()
    }

    #[test]
    fn nothing_is_swept_before_the_store_is_read() {
        let state = lattice(&[("shop-web", ours("shop"))], &[]);
        let mut apps = DeployedApps::default();
        // The store holds two apps; the watch has delivered one so far (shop's entry is next).
        let other = stored_app(&[two_part_app("other", "v1", false)], Some("v1"), false);
        apps.on_manifest(entry("other", Some(other), 1));
        assert!(
            orphans(&state, &apps).is_empty(),
            "shop merely looks missing"
        );
        let shop = stored_app(&[two_part_app("shop", "v1", false)], Some("v1"), false);
        apps.on_manifest(entry("shop", Some(shop), 0));
        assert!(apps.store_read());
        assert!(orphans(&state, &apps).is_empty(), "shop is deployed");

        // An empty store delivers nothing: said once at start instead.
        let mut empty = DeployedApps::default();
        assert!(orphans(&state, &empty).is_empty());
        empty.on_empty_store();
        assert_eq!(found(&state, &empty), [("shop".into(), "shop-web".into())]);
    }

    #[test]
    fn instances_of_apps_gone_or_undeployed_are_stopped() {
        let state = lattice(
            &[
                ("gone-web", ours("gone")),
                ("down-web", ours("down")),
                ("kept-web", ours("kept")),
            ],
            &[("down-http", ours("down"))],
        );
        let mut apps = DeployedApps::default();
        let down = stored_app(&[two_part_app("down", "v1", true)], None, false);
        apps.on_manifest(entry("down", Some(down), 1));
        let kept = stored_app(&[two_part_app("kept", "v1", false)], Some("v1"), false);
        apps.on_manifest(entry("kept", Some(kept), 0));

        let orphans = orphans(&state, &apps);
        let mut seen: Vec<(&str, &str, &str)> = orphans
            .iter()
            .map(|o| (o.app.as_str(), o.id.as_str(), o.why.as_str()))
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("down", "down-http", "app down is not deployed"),
                ("down", "down-web", "app down is not deployed"),
                ("gone", "gone-web", "app gone is not in the manifest store"),
            ]
        );
        let stop_web = orphans.iter().find(|o| o.id == "down-web").unwrap();
        let stop = Command::ScaleComponent(ScaleComponent {
            host_id: "H1".into(),
            component_id: "down-web".into(),
            image: "file:///down-web.wasm".into(),
            count: 0,
            config: Vec::new(),
        });
        assert_eq!(format!("{:?}", stop_web.command), format!("{stop:?}"));
        let stop_http = orphans.iter().find(|o| o.id == "down-http").unwrap();
        let stop = Command::StopProvider(StopProvider {
            host_id: "H1".into(),
            provider_id: "down-http".into(),
        });
        assert_eq!(format!("{:?}", stop_http.command), format!("{stop:?}"));
    }

    #[test]
    fn a_component_the_deployed_version_dropped_is_stopped() {
        // v1 had web and http; v2 (deployed) has web only, and v1's cleanup was lost.
        let state = lattice(
            &[("shop-web", ours("shop"))],
            &[("shop-http", ours("shop"))],
        );
        let mut apps = DeployedApps::default();
        let shop = stored_app(
            &[
                two_part_app("shop", "v1", true),
                two_part_app("shop", "v2", false),
            ],
            Some("v2"),
            false,
        );
        apps.on_manifest(entry("shop", Some(shop), 0));
        let orphans = orphans(&state, &apps);
        assert_eq!(orphans.len(), 1, "{orphans:?}");
        assert_eq!(orphans[0].id, "shop-http");
        assert_eq!(
            orphans[0].why,
            "version v2 of app shop is deployed and does not declare shop-http"
        );
    }

    #[test]
    fn foreign_left_running_unreadable_and_claimed_instances_stay() {
        let mut no_app = ours("");
        no_app.remove(annotations::APP);
        let state = lattice(
            &[
                // Started by hand: no annotations at all.
                ("manual", BTreeMap::new()),
                // wadm's, for an app trellis does not know.
                ("wadm-web", wadms("gone")),
                // Ours, but naming no app.
                ("nameless", no_app),
                ("left-web", ours("left")),
                ("odd-web", ours("odd")),
                // An app undeployed destructively whose id another deployed app now declares.
                ("shared-web", ours("old")),
            ],
            &[("manual-http", BTreeMap::new())],
        );
        let mut apps = DeployedApps::default();
        let left = stored_app(&[two_part_app("left", "v1", true)], None, true);
        apps.on_manifest(entry("left", Some(left), 3));
        apps.on_manifest(entry("odd", Some(serde_json::json!({"versions": 7})), 2));
        let old = stored_app(&[two_part_app("old", "v1", false)], None, false);
        apps.on_manifest(entry("old", Some(old), 1));
        let mut new = two_part_app("new", "v1", false);
        new["spec"]["components"][0]["properties"]["id"] = "shared-web".into();
        let new = stored_app(&[new], Some("v1"), false);
        apps.on_manifest(entry("new", Some(new), 0));
        assert!(apps.store_read());
        // Each stays for its own reason, not because its entry failed to read.
        assert_eq!(apps.stored("left"), Some(Stored::LeftRunning));
        assert_eq!(apps.stored("odd"), Some(Stored::Unreadable));
        assert_eq!(apps.stored("old"), Some(Stored::Managed));
        assert!(apps.manifests.contains_key("new"));
        assert_eq!(found(&state, &apps), Vec::<(String, String)>::new());
    }
}
