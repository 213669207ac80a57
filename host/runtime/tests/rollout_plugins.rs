//! The built-in rollout plugins, loaded as the controller loads them: each is found to be a
//! rollout plugin, claims its strategy, checks properties and decides steps in the sandbox.

mod common;

use trellis_runtime::bindings::rollout::exports::trellis::plugin::rollout_api::{
    RolloutContext, RolloutPhase, RolloutTarget, VersionFigures,
};
use trellis_runtime::PluginKind;

fn figures(version: &str) -> VersionFigures {
    VersionFigures {
        version: version.into(),
        instances: 0,
        wanted: 0,
        requests_per_second: 0.0,
        requests: 0,
        failed: 0,
        p99_ms: 0.0,
        on_unhealthy_hosts: 0,
    }
}

fn context(strategy: &str, properties: &str) -> RolloutContext {
    RolloutContext {
        app: "shop".into(),
        old: figures("v1"),
        new: figures("v2"),
        strategy: strategy.into(),
        properties: properties.into(),
        step: 0,
        target: RolloutTarget {
            traffic: 0,
            new_instances: 0,
            old_instances: 100,
            hosts: None,
        },
        step_elapsed_ms: 0,
        promoted: false,
        memo: None,
    }
}

#[test]
fn canary_and_blue_green_load_as_rollout_plugins_and_take_a_first_step() {
    let (runtime, _dir) =
        common::runtime_with_files(&["build/plugins/canary.wasm", "build/plugins/bluegreen.wasm"]);
    let plugins = runtime.plugins();
    assert!(plugins.problems.is_empty(), "{:?}", plugins.problems);
    let canary = plugins.rollouts.get("canary").expect("canary strategy");
    let blue_green = plugins
        .rollouts
        .get("blue-green")
        .expect("blue-green strategy");
    assert_eq!(canary.kind, PluginKind::Rollout);

    let first = canary
        .step(&context("canary", r#"{"steps":"25,100"}"#))
        .unwrap();
    assert!(matches!(first.phase, RolloutPhase::Progressing));
    assert_eq!(
        (first.step, first.target.traffic, first.target.old_instances),
        (1, 25, 75)
    );

    let first = blue_green.step(&context("blue-green", "{}")).unwrap();
    assert_eq!(
        (
            first.target.new_instances,
            first.target.old_instances,
            first.target.traffic
        ),
        (100, 100, 0)
    );
}

#[test]
fn bad_policy_properties_are_found_by_check_and_abort_a_step() {
    let (runtime, _dir) = common::runtime_with_built("canary");
    let canary = runtime.plugins().rollouts["canary"].clone();
    let found = canary
        .check_rollout("canary", r#"{"steps":"90,10"}"#)
        .unwrap();
    assert!(found[0].message.contains("must rise"), "{found:?}");
    let found = canary.check_rollout("canary", "not json").unwrap();
    assert!(found[0].message.contains("not a JSON object"), "{found:?}");
    let decision = canary.step(&context("canary", "[1]")).unwrap();
    assert!(matches!(decision.phase, RolloutPhase::Abort(why) if why.contains("JSON")));
}

#[test]
fn the_example_rollout_plugin_loads_and_remembers_its_baseline() {
    let (runtime, _dir) = common::runtime_with_files(&["build/examples/latency-guard.wasm"]);
    let plugins = runtime.plugins();
    assert!(plugins.problems.is_empty(), "{:?}", plugins.problems);
    let guard = plugins
        .rollouts
        .get("latency-guard")
        .expect("latency-guard strategy");
    let mut ctx = context("latency-guard", r#"{"increment":"50"}"#);
    ctx.old.p99_ms = 12.0;
    let first = guard.step(&ctx).unwrap();
    assert_eq!((first.step, first.target.traffic), (1, 50));
    assert_eq!(first.memo.as_deref(), Some("12"));
}
