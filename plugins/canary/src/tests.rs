use trellis_sdk::testing::{properties, RolloutRun};
use trellis_sdk::{Rollout, RolloutPhase};

use super::*;

fn run() -> RolloutRun<Canary> {
    RolloutRun::<Canary>::new("canary")
        .property("steps", "10,50,100")
        .property("pause", "5s")
}

#[test]
fn a_healthy_canary_walks_every_step_then_is_done() {
    let decisions = run().run(100);
    let steps: Vec<(u32, u8)> = decisions
        .iter()
        .map(|d| (d.step, d.target.traffic))
        .collect();
    let mut seen: Vec<(u32, u8)> = steps.clone();
    seen.dedup();
    assert_eq!(seen, vec![(1, 10), (2, 50), (3, 100)]);
    assert_eq!(decisions.last().unwrap().phase, RolloutPhase::Done);
    // Each step held its pause: 5 s of 1 s analyses.
    assert!(decisions.len() >= 15, "{}", decisions.len());
}

#[test]
fn a_failing_new_version_is_aborted_at_the_step_it_fails() {
    let mut run = run();
    run.step(); // step 1
    run.advance(1_000);
    run.new_errors(0.5);
    let decision = run.step();
    match decision.phase {
        RolloutPhase::Abort(why) => {
            assert!(why.contains("step 1 of 3"), "{why}");
            assert!(why.contains("max_error_rate"), "{why}");
        }
        other => panic!("expected an abort, got {other:?}"),
    }
}

#[test]
fn a_slow_new_version_is_aborted_when_a_p99_limit_is_set() {
    let mut run = run().property("max_p99_ms", "100");
    run.step();
    run.new_p99_ms(250.0);
    run.advance(1_000);
    assert!(matches!(run.step().phase, RolloutPhase::Abort(why) if why.contains("p99 250 ms")));
}

#[test]
fn a_step_waits_for_its_instances_and_gives_up_after_ready_within() {
    let mut run = run().property("ready_within", "3s");
    run.new_ready(false);
    run.step();
    run.advance(1_000);
    let waiting = run.step();
    assert_eq!(waiting.phase, RolloutPhase::Progressing);
    assert!(
        waiting.message.contains("waiting for 1 of 1"),
        "{}",
        waiting.message
    );
    run.advance(3_000);
    assert!(matches!(run.step().phase, RolloutPhase::Abort(why) if why.contains("ready_within")));
}

#[test]
fn manual_promotion_waits_after_each_step_until_promoted() {
    let mut run = run().property("promotion", "manual");
    let decisions = run.run(100);
    let last = decisions.last().unwrap();
    assert!(
        matches!(&last.phase, RolloutPhase::WaitingForPromotion(why) if why.contains("step 1 of 3"))
    );
    assert_eq!(run.step().step, 1, "still waiting without a promotion");
    run.promote();
    assert_eq!(run.step().step, 2);
}

#[test]
fn by_label_rolls_out_one_value_after_another() {
    let mut run = RolloutRun::<Canary>::new("canary")
        .property("by_label", "region")
        .property("order", "eu, us, ap")
        .property("pause", "1s");
    let decisions = run.run(100);
    let splits: Vec<Option<Vec<String>>> = decisions
        .iter()
        .map(|d| d.target.hosts.as_ref().map(|h| h.new_values.clone()))
        .collect::<Vec<_>>();
    let mut seen = splits.clone();
    seen.dedup();
    assert_eq!(
        seen,
        vec![
            Some(vec!["eu".to_string()]),
            Some(vec!["eu".to_string(), "us".to_string()]),
            None
        ]
    );
    let first = &decisions[0].target;
    assert_eq!(first.hosts.as_ref().unwrap().old_values, vec!["us", "ap"]);
    assert_eq!(
        (first.traffic, first.new_instances, first.old_instances),
        (33, 33, 67)
    );
    assert_eq!(decisions.last().unwrap().phase, RolloutPhase::Done);
}

#[test]
fn bad_properties_are_reported_by_check_and_abort_a_step() {
    for (key, value, says) in [
        ("steps", "50,10", "must rise"),
        ("steps", "0,50", "from 1 to 100"),
        ("pause", "soon", "pause"),
        ("promotion", "later", "auto"),
        ("max_error_rate", "2", "between 0 and 1"),
        ("by_label", "region", "go together"),
    ] {
        let found = Canary::check("canary", &properties(&[(key, value)]));
        assert_eq!(found.len(), 1, "{key}={value}");
        assert!(
            found[0].message.contains(says),
            "{key}={value}: {}",
            found[0].message
        );
        let mut run = RolloutRun::<Canary>::new("canary").property(key, value);
        assert!(matches!(run.step().phase, RolloutPhase::Abort(_)));
    }
    assert!(Canary::check("canary", &properties(&[("steps", "25,100")])).is_empty());
}

#[test]
fn steps_always_end_on_the_whole_app() {
    let plan = by_weight(Some("10,40")).unwrap();
    let traffic: Vec<u8> = plan.iter().map(|t| t.traffic).collect();
    assert_eq!(traffic, vec![10, 40, 100]);
    assert_eq!(plan[0].old_instances, 90);
}
