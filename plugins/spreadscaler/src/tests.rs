use trellis_sdk::testing::{self, TestLattice};

use super::*;

const ID: &str = "shop-echo";
const IMAGE: &str = "file://echo.wasm";

fn ctx(kind: ComponentKind, properties: &str) -> ScalerContext {
    let component = ComponentSpec {
        name: "echo".into(),
        kind,
        image: IMAGE.into(),
        id: ID.into(),
        config: vec![],
    };
    ScalerContext {
        app: "shop".into(),
        version: "v1".into(),
        components: vec![component.clone()],
        component,
        trait_type: "spreadscaler".into(),
        properties: properties.into(),
        memo: None,
    }
}

fn component(properties: &str) -> ScalerContext {
    ctx(ComponentKind::Component, properties)
}

fn provider(properties: &str) -> ScalerContext {
    ctx(ComponentKind::Provider, properties)
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

fn hosts(ids: &[(&str, &str)]) -> TestLattice {
    ids.iter()
        .fold(TestLattice::new().for_app("shop"), |l, (id, region)| {
            l.with_host(id, &[("region", region)])
        })
}

/// Applies reconcile's commands until it reports deployed; returns the settled lattice.
fn converge(ctx: &ScalerContext, mut lattice: TestLattice) -> TestLattice {
    for _ in 0..5 {
        let result = SpreadScaler::reconcile(ctx, &lattice);
        if result.status == Status::Deployed {
            assert!(result.commands.is_empty());
            return lattice;
        }
        lattice.apply(&result.commands);
    }
    panic!(
        "no convergence: {:?}",
        SpreadScaler::reconcile(ctx, &lattice)
    );
}

fn counts(lattice: &TestLattice) -> Vec<(String, u32)> {
    lattice
        .component_instances(ID)
        .into_iter()
        .map(|i| (i.host_id, i.count))
        .collect()
}

#[test]
fn describe_names_the_trait_type() {
    let info = SpreadScaler::describe();
    assert_eq!(info.name, "spreadscaler");
    assert_eq!(info.trait_types, ["spreadscaler"]);
}

#[test]
fn scale_up_spreads_over_several_hosts() {
    let lattice = hosts(&[("a", "east"), ("b", "east"), ("c", "west")]);
    let result = SpreadScaler::reconcile(&component(r#"{"instances": 4}"#), &lattice);
    assert_eq!(
        result.commands,
        [scale("a", 2), scale("b", 1), scale("c", 1)]
    );
    assert_eq!(
        result.status,
        Status::Reconciling("0 of 4 instances of 'echo' in place".into())
    );
    let lattice = converge(&component(r#"{"instances": 4}"#), lattice);
    assert_eq!(counts(&lattice).iter().map(|c| c.1).sum::<u32>(), 4);
}

#[test]
fn scale_up_keeps_existing_instances_where_they_are() {
    let lattice = hosts(&[("a", "east"), ("b", "east"), ("c", "west")]).with_component("c", ID, 1);
    let result = SpreadScaler::reconcile(&component(r#"{"replicas": 3}"#), &lattice);
    assert_eq!(result.commands, [scale("a", 1), scale("b", 1)]);
}

#[test]
fn settled_is_deployed() {
    let lattice = hosts(&[("a", "east"), ("b", "east")])
        .with_component("a", ID, 1)
        .with_component("b", ID, 1);
    let result = SpreadScaler::reconcile(&component(r#"{"instances": 2}"#), &lattice);
    assert_eq!(result, Reconciled::deployed());
}

#[test]
fn scale_down_removes_surplus_from_the_most_loaded() {
    let lattice = hosts(&[("a", "east"), ("b", "east")])
        .with_component("a", ID, 3)
        .with_component("b", ID, 1);
    let result = SpreadScaler::reconcile(&component(r#"{"instances": 2}"#), &lattice);
    assert_eq!(result.commands, [scale("a", 1)]);
    let result = SpreadScaler::reconcile(&component(r#"{"instances": 0}"#), &lattice);
    assert_eq!(result.commands, [scale("a", 0), scale("b", 0)]);
}

#[test]
fn label_change_moves_instances_off_the_host() {
    let props =
        r#"{"instances": 2, "spread": [{"name": "east", "requirements": {"region": "east"}}]}"#;
    let lattice = hosts(&[("a", "east"), ("b", "east"), ("c", "east")])
        .with_component("a", ID, 1)
        .with_component("b", ID, 1);
    assert_eq!(
        SpreadScaler::reconcile(&component(props), &lattice),
        Reconciled::deployed()
    );
    let lattice = lattice.with_labels("a", &[("region", "west")]);
    let result = SpreadScaler::reconcile(&component(props), &lattice);
    // The new instance starts before the old one stops.
    assert_eq!(result.commands, [scale("c", 1), scale("a", 0)]);
    let lattice = converge(&component(props), lattice);
    assert_eq!(
        counts(&lattice),
        [("b".to_string(), 1), ("c".to_string(), 1)]
    );
}

#[test]
fn host_loss_reschedules_elsewhere() {
    let lattice = hosts(&[("a", "east"), ("b", "east"), ("c", "east")])
        .with_component("a", ID, 1)
        .with_component("b", ID, 1)
        .without_host("a");
    let result = SpreadScaler::reconcile(&component(r#"{"instances": 2}"#), &lattice);
    assert_eq!(result.commands, [scale("c", 1)]);
}

#[test]
fn instances_on_a_vanished_host_are_not_commanded() {
    // The lattice still lists an instance on a host it no longer knows.
    let lattice = hosts(&[("b", "east")]).with_component("gone", ID, 1);
    let result = SpreadScaler::reconcile(&component(r#"{"instances": 1}"#), &lattice);
    assert_eq!(result.commands, [scale("b", 1)]);
}

#[test]
fn two_spreads_by_weight() {
    let props = r#"{"instances": 5, "spread": [
        {"name": "east", "requirements": {"region": "east"}, "weight": 80},
        {"name": "west", "requirements": {"region": "west"}, "weight": 20}]}"#;
    let lattice = hosts(&[("e1", "east"), ("e2", "east"), ("w1", "west")]);
    let result = SpreadScaler::reconcile(&component(props), &lattice);
    assert_eq!(
        result.commands,
        [scale("e1", 2), scale("e2", 2), scale("w1", 1)]
    );
    converge(&component(props), lattice);
}

#[test]
fn default_weight_splits_evenly() {
    let props = r#"{"instances": 4, "spread": [
        {"name": "east", "requirements": {"region": "east"}},
        {"name": "west", "requirements": {"region": "west"}}]}"#;
    let lattice = hosts(&[("e1", "east"), ("w1", "west"), ("w2", "west")]);
    let result = SpreadScaler::reconcile(&component(props), &lattice);
    assert_eq!(
        result.commands,
        [scale("e1", 2), scale("w1", 1), scale("w2", 1)]
    );
}

#[test]
fn overlapping_spreads_share_a_host_without_double_counting() {
    // "any" matches every host, "east" only e1: e1 holds instances of both.
    let props = r#"{"instances": 4, "spread": [
        {"name": "any", "requirements": {}},
        {"name": "east", "requirements": {"region": "east"}}]}"#;
    let lattice = hosts(&[("e1", "east")]);
    let lattice = converge(&component(props), lattice);
    assert_eq!(counts(&lattice), [("e1".to_string(), 4)]);
}

#[test]
fn no_matching_host_fails_and_names_the_spread() {
    let props = r#"{"instances": 2, "spread": [
        {"name": "gpu", "requirements": {"gpu": "yes"}},
        {"name": "east", "requirements": {"region": "east"}}]}"#;
    let lattice = hosts(&[("a", "east")]);
    let result = SpreadScaler::reconcile(&component(props), &lattice);
    assert_eq!(
        result.status,
        Status::Failed("no host matches spread 'gpu' (requirements gpu=yes)".into())
    );
    // The spread that can be met still is.
    assert_eq!(result.commands, [scale("a", 1)]);
}

#[test]
fn bad_properties_fail_with_the_field_path() {
    let lattice = hosts(&[("a", "east")]);
    let result = SpreadScaler::reconcile(
        &component(r#"{"instances": 1, "spread": [{"name": "x", "weight": -1}]}"#),
        &lattice,
    );
    let Status::Failed(reason) = result.status else {
        panic!("{result:?}");
    };
    assert!(reason.contains("spread[0].weight"), "{reason}");
    assert!(result.commands.is_empty());
}

#[test]
fn provider_runs_once_on_each_of_n_hosts() {
    let lattice = hosts(&[("a", "east"), ("b", "east"), ("c", "east")]);
    let result = SpreadScaler::reconcile(&provider(r#"{"instances": 2}"#), &lattice);
    assert_eq!(result.commands, [start("a"), start("b")]);
    let lattice = converge(&provider(r#"{"instances": 2}"#), lattice);
    assert_eq!(lattice.provider_instances(ID).len(), 2);

    let result = SpreadScaler::reconcile(&provider(r#"{"instances": 1}"#), &lattice);
    assert_eq!(result.commands, [stop("b")]);
}

#[test]
fn provider_wanting_more_hosts_than_exist_waits() {
    let lattice = hosts(&[("a", "east"), ("b", "east")])
        .with_provider("a", ID)
        .with_provider("b", ID);
    let result = SpreadScaler::reconcile(&provider(r#"{"instances": 3}"#), &lattice);
    assert!(result.commands.is_empty());
    let Status::Waiting(reason) = result.status else {
        panic!("{result:?}");
    };
    assert!(reason.contains("2 of 3"), "{reason}");
}

#[test]
fn provider_spreads_do_not_share_a_host() {
    let props = r#"{"instances": 2, "spread": [
        {"name": "any", "requirements": {}},
        {"name": "east", "requirements": {"region": "east"}}]}"#;
    let lattice = hosts(&[("e1", "east"), ("w1", "west")]);
    let result = SpreadScaler::reconcile(&provider(props), &lattice);
    assert_eq!(result.commands, [start("e1"), start("w1")]);
}

#[test]
fn cleanup_removes_every_instance() {
    let lattice = hosts(&[("a", "east"), ("b", "east")])
        .with_component("a", ID, 2)
        .with_component("b", ID, 1)
        .with_provider("b", ID);
    let ctx = component(r#"{"instances": 3}"#);
    assert_eq!(
        SpreadScaler::cleanup(&ctx, &lattice),
        [scale("a", 0), scale("b", 0)]
    );
    let ctx = provider(r#"{"instances": 1}"#);
    assert_eq!(SpreadScaler::cleanup(&ctx, &lattice), [stop("b")]);
}

#[test]
fn a_provider_another_app_started_is_shared_never_stopped() {
    // b runs the provider for another app; a runs ours.
    let lattice = hosts(&[("a", "east"), ("b", "east"), ("c", "east")])
        .with_provider("a", ID)
        .with_foreign_provider("b", ID, "other");
    // Two wanted: both running ones count, nothing to start.
    let result = SpreadScaler::reconcile(&provider(r#"{"instances": 2}"#), &lattice);
    assert_eq!(result, Reconciled::deployed());
    // One wanted: ours may go, theirs may not.
    let result = SpreadScaler::reconcile(&provider(r#"{"instances": 0}"#), &lattice);
    assert_eq!(result.commands, [stop("a")]);
    // Cleanup on undeploy leaves theirs running too.
    assert_eq!(
        SpreadScaler::cleanup(&provider(r#"{"instances": 2}"#), &lattice),
        [stop("a")]
    );
}

#[test]
fn check_reports_bad_properties_before_any_reconcile() {
    assert!(SpreadScaler::check(&component(r#"{"instances": 2}"#)).is_empty());
    let found = SpreadScaler::check(&component(
        r#"{"instances": 2, "spread": [{"name": "x", "weight": "heavy"}]}"#,
    ));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "spread[0].weight");
    assert_eq!(found[0].severity, trellis_sdk::Severity::Error);
}

#[test]
fn a_new_image_is_rolled_out_where_the_count_is_already_right() {
    let old = |host: &str| trellis_sdk::ComponentInstance {
        host_id: host.into(),
        component_id: ID.into(),
        image: "file://echo-v1.wasm".into(),
        count: 1,
        annotations: trellis_sdk::label_map(&[(trellis_sdk::diff::APP_ANNOTATION, "shop")]),
    };
    let lattice = hosts(&[("a", "east"), ("b", "east")])
        .with_component_instance(old("a"))
        .with_component_instance(old("b"));
    let ctx = component(r#"{"instances": 2}"#);
    let result = SpreadScaler::reconcile(&ctx, &lattice);
    assert_eq!(result.commands, [scale("a", 1), scale("b", 1)]);
    assert_eq!(
        result.status,
        Status::Reconciling("0 of 2 instances of 'echo' in place".into())
    );
    let settled = converge(&ctx, lattice);
    assert!(settled
        .component_instances(ID)
        .iter()
        .all(|i| i.image == IMAGE));
}

/// On a lattice larger than the controller's shortlist, a ranking names only a few hosts; the
/// scaler asks again until each instance has a host of its own, as on a small lattice.
#[test]
fn a_shortlisted_ranking_still_gives_each_instance_its_own_host() {
    let ten: Vec<(String, &str)> = (0..10).map(|i| (format!("h{i}"), "east")).collect();
    let ten: Vec<(&str, &str)> = ten.iter().map(|(h, r)| (h.as_str(), *r)).collect();
    let lattice = hosts(&ten).with_shortlist(2);
    let result = SpreadScaler::reconcile(&component(r#"{"instances": 6}"#), &lattice);
    assert_eq!(result.commands.len(), 6, "{result:?}");
    assert!(result
        .commands
        .iter()
        .all(|c| matches!(c, Command::ScaleComponent { count: 1, .. })));

    let lattice = hosts(&ten).with_shortlist(3);
    let result = SpreadScaler::reconcile(&provider(r#"{"instances": 5}"#), &lattice);
    assert_eq!(result.commands.len(), 5, "{result:?}");
    // More than there are: every host once, and the rest waits.
    let lattice = hosts(&ten).with_shortlist(4);
    let result = SpreadScaler::reconcile(&provider(r#"{"instances": 12}"#), &lattice);
    assert_eq!(result.commands.len(), 10, "{result:?}");
    assert!(
        matches!(result.status, Status::Reconciling(_)),
        "{result:?}"
    );
}
