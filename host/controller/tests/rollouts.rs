//! Rollouts with the built rollout plugins and no NATS: a manifest's `rollout` policy is
//! validated by its plugin, and an owner's look at a stored rollout takes the plugin's step,
//! finishes a rollback after the drain, and holds (saying why) when the plugin is missing or
//! a person aborted.

mod common;

use chrono::{Duration as Span, Utc};
use trellis_controller::rollout::drive::{look, DRAIN};
use trellis_controller::rollout::start;
use trellis_controller::store::{StoredApp, StoredVersion};
use trellis_controller::validate::validate_text;
use trellis_lattice::api::{RolloutState, VersionFigures};
use trellis_lattice::Manifest;
use trellis_runtime::{Runtime, RuntimeConfig};

fn runtime(plugins: &[&str]) -> (Runtime, tempfile::TempDir) {
    runtime_in(common::plugin_dir(plugins))
}

/// A runtime over the plugins in `dir`, loaded.
fn runtime_in(dir: tempfile::TempDir) -> (Runtime, tempfile::TempDir) {
    let runtime = Runtime::new(RuntimeConfig {
        plugin_dir: dir.path().to_path_buf(),
        ..RuntimeConfig::default()
    })
    .unwrap();
    runtime.reload();
    (runtime, dir)
}

fn shop(version: &str, policy: &str) -> String {
    format!(
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: shop\n  annotations:\n    version: {version}\nspec:\n{policy}  components:\n    - name: web\n      type: component\n      properties:\n        image: file:///web.wasm\n      traits:\n        - type: spreadscaler\n          properties:\n            instances: 2\n"
    )
}

fn policy(strategy: &str, properties: &str) -> String {
    format!(
        "  policies:\n    - name: rollout\n      type: {strategy}\n      properties:\n{properties}"
    )
}

#[test]
fn a_rollout_policy_is_checked_by_its_plugin() {
    let (runtime, _dir) = runtime(&["spreadscaler", "canary", "bluegreen"]);
    let good = validate_text(
        &runtime,
        &shop("v2", &policy("canary", "        steps: \"10,100\"\n")),
    );
    assert!(good.is_empty(), "{good:#?}");

    let unknown = validate_text(
        &runtime,
        &shop("v2", &policy("canery", "        steps: \"10\"\n")),
    );
    assert_eq!(unknown[0].path, "spec.policies[0].type");
    assert!(
        unknown[0]
            .message
            .contains("unknown rollout strategy `canery`"),
        "{unknown:#?}"
    );
    assert!(
        unknown[0].message.contains("blue-green, canary"),
        "{unknown:#?}"
    );
    assert!(
        unknown[0].hint.contains("did you mean `canary`"),
        "{unknown:#?}"
    );

    let bad = validate_text(
        &runtime,
        &shop("v2", &policy("canary", "        steps: \"50,20\"\n")),
    );
    assert_eq!(bad[0].path, "spec.policies[0].properties");
    assert!(bad[0].message.contains("must rise"), "{bad:#?}");
    assert_eq!(bad[0].source, "canary");
}

/// App `shop` with v1 deployed and a rollout to v2 by `strategy` just started.
fn rolling(strategy: &str, properties: &str) -> StoredApp {
    let now = Utc::now();
    let version = |v: &str, text: String| StoredVersion {
        version: v.into(),
        manifest: Manifest::parse(&text).unwrap(),
        put_at: now,
    };
    let mut app = StoredApp {
        versions: vec![
            version("v1", shop("v1", "")),
            version("v2", shop("v2", &policy(strategy, properties))),
        ],
        deployed: Some("v1".into()),
        ..StoredApp::default()
    };
    app.rollout = start(&app, "v2", now);
    app
}

fn figures(version: &str, instances: u32) -> VersionFigures {
    VersionFigures {
        version: version.into(),
        instances,
        wanted: instances,
        ..VersionFigures::default()
    }
}

#[test]
fn an_owner_takes_the_plugins_step_and_finishes_a_rollback_after_the_drain() {
    let (runtime, _dir) = runtime(&["canary"]);
    let plugins = runtime.plugins();
    let app = rolling("canary", "        steps: \"50,100\"\n");
    let now = Utc::now();
    let first = look(&app, &plugins, figures("v1", 2), figures("v2", 0), now).unwrap();
    let stored = first.write.expect("a step to store");
    let r = stored.rollout.as_ref().unwrap();
    assert_eq!(
        (r.step, r.target.traffic, r.state),
        (1, 50, RolloutState::Progressing)
    );
    assert_eq!(r.steps.len(), 1);

    // A person aborts: every request back to v1 at once, v2 removed after the drain.
    let mut aborted = stored.clone();
    aborted.rollout.as_mut().unwrap().abort_requested = Some("slow".into());
    let rolling_back = look(&aborted, &plugins, figures("v1", 1), figures("v2", 1), now)
        .unwrap()
        .write
        .unwrap();
    let r = rolling_back.rollout.as_ref().unwrap();
    assert_eq!(
        (r.state, r.target.traffic, r.target.old_instances),
        (RolloutState::RollingBack, 0, 100)
    );
    assert!(
        r.message.contains("aborted by a person: slow"),
        "{}",
        r.message
    );
    let early = look(
        &rolling_back,
        &plugins,
        figures("v1", 2),
        figures("v2", 1),
        now,
    )
    .unwrap();
    assert!(early.write.is_none(), "not before the drain");
    let later = now + Span::from_std(DRAIN).unwrap();
    let done = look(
        &rolling_back,
        &plugins,
        figures("v1", 2),
        figures("v2", 1),
        later,
    )
    .unwrap()
    .write
    .unwrap();
    assert_eq!(
        done.rollout.as_ref().unwrap().state,
        RolloutState::RolledBack
    );
    assert_eq!(done.deployed.as_deref(), Some("v1"));
    assert!(
        look(&done, &plugins, figures("v1", 2), figures("v2", 0), later).is_none(),
        "over"
    );
}

#[test]
fn a_missing_rollout_plugin_holds_the_step_and_says_what_to_do() {
    let (runtime, _dir) = runtime(&["canary"]);
    let app = rolling("blue-green", "        keep_old_for: 1s\n");
    let held = look(
        &app,
        &runtime.plugins(),
        figures("v1", 2),
        figures("v2", 0),
        Utc::now(),
    )
    .unwrap()
    .write
    .unwrap();
    let r = held.rollout.unwrap();
    assert_eq!((r.step, r.state), (0, RolloutState::Progressing));
    assert!(
        r.message
            .contains("no rollout plugin provides strategy `blue-green` (loaded: canary)"),
        "{}",
        r.message
    );
    assert!(
        r.message.contains("trellis app rollout abort shop"),
        "{}",
        r.message
    );
}

#[test]
fn a_rollout_plugin_that_traps_holds_the_step_and_names_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let trap = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../build/fixtures/rollouttrap.wasm");
    std::fs::copy(&trap, dir.path().join("rollouttrap.wasm")).unwrap();
    let (runtime, _dir) = runtime_in(dir);
    let app = rolling("trap", "        any: thing\n");
    let held = look(
        &app,
        &runtime.plugins(),
        figures("v1", 2),
        figures("v2", 0),
        Utc::now(),
    )
    .unwrap()
    .write
    .unwrap();
    let r = held.rollout.unwrap();
    assert_eq!(
        (r.step, r.state),
        (0, RolloutState::Progressing),
        "the step holds"
    );
    assert!(
        r.message.contains("the rollout plugin failed"),
        "{}",
        r.message
    );
    assert!(r.message.contains("panicking on purpose"), "{}", r.message);
}
