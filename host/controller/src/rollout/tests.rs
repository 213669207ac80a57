//! A rollout's shapes one after another, as the store holds them: what each change of the
//! app's entry leaves to clean up (nothing of a version still running) and what it runs.

use chrono::Utc;
use trellis_lattice::api::{RolloutState, RolloutTarget};
use trellis_lattice::Manifest;

use super::*;
use crate::reconciler::planning::cleanup_after;
use crate::store::{StoredApp, StoredVersion};

fn app_at(version: &str, policy: bool) -> Manifest {
    let policy = if policy {
        "  policies:\n    - name: rollout\n      type: canary\n      properties: {}\n"
    } else {
        ""
    };
    Manifest::parse(&format!(
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: shop\n  annotations:\n    version: {version}\nspec:\n{policy}  components:\n    - name: web\n      type: component\n      properties:\n        image: file:///web.wasm\n      traits:\n        - type: spreadscaler\n          properties:\n            instances: 2\n"
    ))
    .unwrap()
}

fn stored() -> StoredApp {
    let now = Utc::now();
    StoredApp {
        versions: vec![
            StoredVersion {
                version: "v1".into(),
                manifest: app_at("v1", false),
                put_at: now,
            },
            StoredVersion {
                version: "v2".into(),
                manifest: app_at("v2", true),
                put_at: now,
            },
        ],
        deployed: Some("v1".into()),
        ..StoredApp::default()
    }
}

fn ids(m: &Manifest) -> Vec<String> {
    m.spec
        .components
        .iter()
        .map(|c| m.component_id(c))
        .collect()
}

fn cleaned(previous: &Manifest, next: Option<&Manifest>) -> Vec<String> {
    cleanup_after("shop", previous.clone(), next)
        .map(|c| c.scalers.into_iter().map(|(_, id, _)| id).collect())
        .unwrap_or_default()
}

#[test]
fn a_deploy_with_a_rollout_policy_starts_one_and_a_plain_one_does_not() {
    let app = stored();
    let rollout = start(&app, "v2", Utc::now()).expect("v2 asks for a canary");
    assert_eq!(
        (
            rollout.from.as_str(),
            rollout.to.as_str(),
            rollout.strategy.as_str()
        ),
        ("v1", "v2", "canary")
    );
    assert_eq!(rollout.target, RolloutTarget::start());
    assert!(start(&app, "v1", Utc::now()).is_none(), "v1 has no policy");
    let undeployed = StoredApp {
        deployed: None,
        ..stored()
    };
    assert!(
        start(&undeployed, "v2", Utc::now()).is_none(),
        "a first deploy has nothing to roll from"
    );
}

#[test]
fn neither_version_is_cleaned_up_while_it_runs_and_the_loser_is_at_the_end() {
    let mut app = stored();
    let before = effective(&app).unwrap();
    assert_eq!(ids(&before), vec!["shop-web"]);

    app.rollout = start(&app, "v2", Utc::now());
    let step = |app: &mut StoredApp, percent: u8| {
        let r = app.rollout.as_mut().unwrap();
        r.target = RolloutTarget {
            traffic: percent,
            new_instances: percent,
            old_instances: 100 - percent,
            hosts: None,
        };
    };
    step(&mut app, 50);
    let during = effective(&app).unwrap();
    assert_eq!(ids(&during), vec!["shop-web", "shop-web-v2"]);
    assert!(
        cleaned(&before, Some(&during)).is_empty(),
        "v1 keeps running under its new name"
    );

    // Done: v2 is the app, under the ids it ran with; only v1 is cleaned up.
    let mut done = app.clone();
    done.rollout.as_mut().unwrap().state = RolloutState::Done;
    done.live = new_version(&done, done.rollout.as_ref().unwrap());
    done.deployed = Some("v2".into());
    let after = effective(&done).unwrap();
    assert_eq!(ids(&after), vec!["shop-web-v2"]);
    assert_eq!(cleaned(&during, Some(&after)), vec!["shop-web"]);

    // Rolled back instead: v1 as before; only v2 is cleaned up.
    let mut back = app.clone();
    back.rollout.as_mut().unwrap().state = RolloutState::RolledBack;
    let after = effective(&back).unwrap();
    assert_eq!(ids(&after), vec!["shop-web"]);
    assert_eq!(cleaned(&during, Some(&after)), vec!["shop-web-v2"]);
}

#[test]
fn an_undeploy_ends_a_rollout_and_removes_both() {
    let mut app = stored();
    app.rollout = start(&app, "v2", Utc::now());
    app.deployed = None;
    end_by_undeploy(&mut app, Utc::now());
    assert_eq!(app.rollout.unwrap().state, RolloutState::RolledBack);
}
