use trellis_sdk::testing::{self, scaler_context, TestLattice};

use super::*;

const ID: &str = "app-web";

fn component(properties: &str) -> ScalerContext {
    scaler_context("daemonscaler", properties)
}

fn provider(properties: &str) -> ScalerContext {
    let mut ctx = component(properties);
    ctx.component.kind = ComponentKind::Provider;
    ctx.components = vec![ctx.component.clone()];
    ctx
}

fn scale(host: &str, count: u32) -> Command {
    testing::scale(&component("{}").component, host, count)
}

fn start(host: &str) -> Command {
    testing::start(&component("{}").component, host)
}

fn stop(host: &str) -> Command {
    testing::stop(&component("{}").component, host)
}

const EAST: &str =
    r#"{"instances": 2, "spread": [{"name": "east", "requirements": {"region": "east"}}]}"#;

fn lattice() -> TestLattice {
    TestLattice::new()
        .with_host("a", &[("region", "east")])
        .with_host("b", &[("region", "west")])
        .with_host("c", &[("region", "east")])
}

/// Applies reconcile's commands until it reports deployed; returns the settled lattice.
fn converge(ctx: &ScalerContext, mut lattice: TestLattice) -> TestLattice {
    for _ in 0..3 {
        let result = DaemonScaler::reconcile(ctx, &lattice);
        if result.status == Status::Deployed {
            assert!(result.commands.is_empty());
            return lattice;
        }
        lattice.apply(&result.commands);
    }
    panic!(
        "no convergence: {:?}",
        DaemonScaler::reconcile(ctx, &lattice)
    );
}

#[test]
fn runs_the_count_on_every_matching_host() {
    let result = DaemonScaler::reconcile(&component(EAST), &lattice());
    assert_eq!(result.commands, [scale("a", 2), scale("c", 2)]);
    assert!(matches!(result.status, Status::Reconciling(_)));
    let settled = converge(&component(EAST), lattice());
    assert_eq!(settled.component_instances(ID).len(), 2);
}

#[test]
fn no_spread_means_every_host() {
    let result = DaemonScaler::reconcile(&component(r#"{"replicas": 1}"#), &lattice());
    assert_eq!(
        result.commands,
        [scale("a", 1), scale("b", 1), scale("c", 1)]
    );
}

#[test]
fn scale_up_and_down_change_every_host() {
    let settled = converge(&component(EAST), lattice());
    let up =
        r#"{"instances": 3, "spread": [{"name": "east", "requirements": {"region": "east"}}]}"#;
    assert_eq!(
        DaemonScaler::reconcile(&component(up), &settled).commands,
        [scale("a", 3), scale("c", 3)]
    );
    let down =
        r#"{"instances": 1, "spread": [{"name": "east", "requirements": {"region": "east"}}]}"#;
    assert_eq!(
        DaemonScaler::reconcile(&component(down), &settled).commands,
        [scale("a", 1), scale("c", 1)]
    );
}

#[test]
fn a_joining_host_gets_it_and_a_relabelled_host_loses_it() {
    let settled = converge(&component(EAST), lattice());
    let joined = settled.clone().with_host("d", &[("region", "east")]);
    assert_eq!(
        DaemonScaler::reconcile(&component(EAST), &joined).commands,
        [scale("d", 2)]
    );
    let relabelled = settled.with_labels("a", &[("region", "west")]);
    assert_eq!(
        DaemonScaler::reconcile(&component(EAST), &relabelled).commands,
        [scale("a", 0)]
    );
}

#[test]
fn host_loss_commands_nothing_to_the_lost_host() {
    let settled = converge(&component(EAST), lattice());
    let result = DaemonScaler::reconcile(&component(EAST), &settled.without_host("a"));
    assert_eq!(result, Reconciled::deployed());
}

#[test]
fn overlapping_spreads_count_a_host_once() {
    let props = r#"{"instances": 1, "spread": [
        {"name": "east", "requirements": {"region": "east"}},
        {"name": "all-a", "requirements": {"region": "east"}, "weight": 5}]}"#;
    assert_eq!(
        DaemonScaler::reconcile(&component(props), &lattice()).commands,
        [scale("a", 1), scale("c", 1)]
    );
}

#[test]
fn no_matching_host_waits_and_says_why() {
    let props = r#"{"instances": 1, "spread": [{"name": "gpu", "requirements": {"gpu": "true"}}]}"#;
    let result = DaemonScaler::reconcile(&component(props), &lattice());
    let Status::Waiting(why) = result.status else {
        panic!("{result:?}");
    };
    assert!(
        why.contains("spread 'gpu' (requirements gpu=true)"),
        "{why}"
    );
}

#[test]
fn providers_run_once_per_matching_host_and_foreign_ones_stay() {
    let result = DaemonScaler::reconcile(&provider(EAST), &lattice());
    assert_eq!(result.commands, [start("a"), start("c")]);
    // b runs it for another app and leaves the east spread: still not ours to stop.
    let lattice = lattice()
        .with_provider("a", ID)
        .with_provider("c", ID)
        .with_foreign_provider("b", ID, "other");
    assert_eq!(
        DaemonScaler::reconcile(&provider(EAST), &lattice),
        Reconciled::deployed()
    );
    assert_eq!(
        DaemonScaler::cleanup(&provider(EAST), &lattice),
        [stop("a"), stop("c")]
    );
}

#[test]
fn bad_properties_fail_and_check_names_the_field() {
    let bad = r#"{"instances": -1}"#;
    assert!(matches!(
        DaemonScaler::reconcile(&component(bad), &lattice()).status,
        Status::Failed(_)
    ));
    assert_eq!(DaemonScaler::check(&component(bad))[0].path, "instances");
    assert!(DaemonScaler::check(&component(EAST)).is_empty());
}
