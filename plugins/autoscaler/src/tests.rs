use std::collections::BTreeMap;

use proptest::prelude::*;
use trellis_sdk::testing::{scaler_context, TestLattice};
use trellis_sdk::{Lattice, Reconciled, Scaler, ScalerContext, Status, Traffic};

use super::*;

const ID: &str = "app-web";

fn ctx(properties: &str, memo: Option<&str>) -> ScalerContext {
    ScalerContext {
        memo: memo.map(String::from),
        ..scaler_context("autoscaler", properties)
    }
}

fn lattice() -> TestLattice {
    TestLattice::new()
        .with_host("a", &[])
        .with_host("b", &[])
        .with_host("c", &[])
}

fn counts(lattice: &TestLattice) -> BTreeMap<String, u32> {
    lattice.instance_counts(Some(ID))
}

/// Reconciles, applies the commands, and returns the result with the lattice after.
fn step(lattice: &mut TestLattice, properties: &str, memo: Option<&str>) -> Reconciled {
    let result = Autoscaler::reconcile(&ctx(properties, memo), lattice);
    lattice.apply(&result.commands);
    result
}

const IN_FLIGHT: &str = r#"{"min_instances": 1, "max_instances": 4, "target_in_flight": 2, "scale_up_cooldown_seconds": 5, "scale_down_cooldown_seconds": 30}"#;

#[test]
fn traffic_gains_instances_and_idle_sheds_them_after_the_cooldown() {
    let mut lattice = lattice()
        .with_component("a", ID, 1)
        .with_traffic(ID, Traffic::on("a", 40.0, 7))
        .with_now(10_000);
    // 7 in flight at 2 each: 4 instances, the 3 new ones where the ranking puts them.
    let up = step(&mut lattice, IN_FLIGHT, None);
    assert!(
        matches!(up.status, Status::Reconciling(_)),
        "{:?}",
        up.status
    );
    assert_eq!(counts(&lattice).values().sum::<u32>(), 4);
    assert_eq!(
        counts(&lattice).len(),
        3,
        "spread over the hosts: {:?}",
        counts(&lattice)
    );
    assert_eq!(up.recheck_after_ms, Some(1000));
    let memo = up.memo.clone().unwrap();

    // Traffic stops: nothing goes for 30 s.
    let mut lattice = lattice.without_traffic().with_now(11_000);
    let held = step(&mut lattice, IN_FLIGHT, Some(&memo));
    assert!(held.commands.is_empty());
    assert_eq!(held.status, Status::Deployed);
    let memo = held.memo.unwrap();
    assert!(memo.contains("low=11000"), "{memo}");
    let mut lattice = lattice.with_now(40_000);
    let still = step(&mut lattice, IN_FLIGHT, Some(&memo));
    assert!(
        still.commands.is_empty(),
        "29 s of 30: {:?}",
        still.commands
    );
    // 30 s after traffic stopped: down to the minimum.
    let mut lattice = lattice.with_now(41_000);
    let down = step(&mut lattice, IN_FLIGHT, Some(&memo));
    assert!(!down.commands.is_empty());
    assert_eq!(counts(&lattice).values().sum::<u32>(), 1);
}

#[test]
fn a_break_in_low_traffic_restarts_the_down_cooldown() {
    let mut lattice = lattice()
        .with_component("a", ID, 2)
        .with_component("b", ID, 2);
    let low = step(&mut lattice.clone().with_now(1_000), IN_FLIGHT, None)
        .memo
        .unwrap();
    // Traffic for 4 again at 20 s: the count is right, the low spell ends.
    let mut busy = lattice
        .clone()
        .with_traffic(ID, Traffic::on("a", 10.0, 8))
        .with_now(20_000);
    let memo = step(&mut busy, IN_FLIGHT, Some(&low)).memo.unwrap();
    assert!(!memo.contains("low="), "{memo}");
    // Low again from 25 s: at 40 s (39 s after the first low) nothing goes yet.
    lattice = lattice.with_now(25_000);
    let memo = step(&mut lattice, IN_FLIGHT, Some(&memo)).memo.unwrap();
    lattice = lattice.with_now(40_000);
    let held = step(&mut lattice, IN_FLIGHT, Some(&memo));
    assert!(held.commands.is_empty(), "{:?}", held.commands);
}

#[test]
fn the_up_cooldown_spaces_scale_ups() {
    let mut lattice = lattice()
        .with_component("a", ID, 1)
        .with_traffic(ID, Traffic::on("a", 10.0, 4))
        .with_now(1_000);
    let first = step(&mut lattice, IN_FLIGHT, None);
    assert_eq!(counts(&lattice).values().sum::<u32>(), 2);
    // More traffic 2 s later: held until 5 s after the first scale-up.
    let mut lattice = lattice
        .with_traffic(ID, Traffic::on("a", 10.0, 8))
        .with_now(3_000);
    let held = step(&mut lattice, IN_FLIGHT, first.memo.as_deref());
    assert!(held.commands.is_empty());
    assert_eq!(held.recheck_after_ms, Some(1000));
    let mut lattice = lattice.with_now(6_000);
    step(&mut lattice, IN_FLIGHT, held.memo.as_deref());
    assert_eq!(counts(&lattice).values().sum::<u32>(), 4);
}

#[test]
fn from_zero_a_waiting_request_starts_an_instance_at_once() {
    let props = r#"{"min_instances": 0, "max_instances": 3, "target_requests_per_second": 100}"#;
    // Asleep: nothing runs, nothing asked.
    let mut idle = lattice().with_now(5_000);
    let asleep = step(&mut idle, props, None);
    assert!(asleep.commands.is_empty());
    assert_eq!(asleep.status, Status::Deployed);
    // A request waits on host b's HTTP server (in flight, no rate yet), even right after a
    // scale-up: one instance now.
    let memo = Memo {
        up_at_ms: Some(4_900),
        low_since_ms: None,
    }
    .encode();
    let mut woken = lattice()
        .with_traffic(ID, Traffic::on("b", 0.0, 1))
        .with_now(5_000);
    step(&mut woken, props, Some(&memo));
    assert_eq!(counts(&woken).values().sum::<u32>(), 1);
}

#[test]
fn without_a_memo_nothing_goes_before_a_full_cooldown() {
    // A restarted controller has no memo: the low spell starts now.
    let mut lattice = lattice().with_component("a", ID, 3).with_now(100_000);
    let first = step(&mut lattice, IN_FLIGHT, None);
    assert!(first.commands.is_empty());
    let mut later = lattice.with_now(129_000);
    assert!(step(&mut later, IN_FLIGHT, first.memo.as_deref())
        .commands
        .is_empty());
}

#[test]
fn requirements_limit_the_hosts_and_say_when_none_fits() {
    let props = r#"{"max_instances": 2, "target_in_flight": 1, "requirements": {"zone": "x"}}"#;
    let mut lattice = lattice()
        .with_host("x1", &[("zone", "x")])
        .with_traffic(ID, Traffic::on("a", 1.0, 2))
        .with_now(1);
    step(&mut lattice, props, None);
    assert_eq!(counts(&lattice), BTreeMap::from([("x1".to_string(), 2)]));
    let mut none = TestLattice::new()
        .with_host("a", &[])
        .with_traffic(ID, Traffic::on("a", 1.0, 2));
    let waiting = step(&mut none, props, None);
    assert!(
        matches!(&waiting.status, Status::Waiting(w) if w.contains("zone=x")),
        "{:?}",
        waiting.status
    );
}

#[test]
fn fixed_bounds_need_no_rechecks() {
    let props = r#"{"min_instances": 2, "max_instances": 2, "target_in_flight": 1}"#;
    let mut lattice = lattice().with_now(1);
    let result = step(&mut lattice, props, None);
    assert_eq!(result.recheck_after_ms, None);
    assert_eq!(counts(&lattice).values().sum::<u32>(), 2);
}

#[test]
fn bad_properties_are_named() {
    let check = |props: &str| Autoscaler::check(&ctx(props, None));
    let paths = |props: &str| -> Vec<String> { check(props).into_iter().map(|d| d.path).collect() };
    assert_eq!(paths(r#"{"max_instances": 3}"#), ["target_in_flight"]);
    assert_eq!(
        paths(r#"{"min_instances": 5, "max_instances": 3, "target_in_flight": 1}"#),
        ["min_instances"]
    );
    assert_eq!(
        paths(r#"{"max_instances": 0, "min_instances": 0, "target_requests_per_second": -1}"#),
        ["max_instances", "target_requests_per_second"]
    );
    assert_eq!(
        paths(r#"{"max_instances": 3, "target_in_flight": 1, "target_requests_per_second": 5}"#),
        ["target_in_flight"]
    );
    assert_eq!(
        paths(
            r#"{"max_instances": 3, "target_in_flight": 1, "scale_down_cooldown_seconds": 100000}"#
        ),
        ["scale_down_cooldown_seconds"]
    );
    assert!(
        check(r#"{"max_instances": 3, "target_in_flight": 1, "unknown": 1}"#)[0]
            .message
            .contains("unknown")
    );
    assert!(check(IN_FLIGHT).is_empty());
}

#[test]
fn memos_read_back_and_tolerate_garbage() {
    let memo = Memo {
        up_at_ms: Some(12),
        low_since_ms: Some(34),
    };
    assert_eq!(Memo::decode(Some(&memo.encode())), memo);
    assert_eq!(Memo::decode(Some("up=x low")), Memo::default());
    assert_eq!(Memo::decode(None), Memo::default());
}

proptest! {
    /// Whatever the load, the wanted count stays within the bounds, and any request in flight
    /// asks for at least one instance.
    #[test]
    fn wanted_stays_within_bounds(
        in_flight in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), any::<f64>(), 0.0..1000.0],
        rps in prop_oneof![Just(f64::NAN), any::<f64>(), 0.0..10000.0],
        min in 0u32..5, extra in 0u32..10, target in 0.1f64..100.0, per_second in any::<bool>(),
    ) {
        let p = Properties {
            min_instances: min,
            max_instances: min + extra.max(1),
            target_in_flight: (!per_second).then_some(target),
            target_requests_per_second: per_second.then_some(target),
            scale_up_cooldown_seconds: 5,
            scale_down_cooldown_seconds: 30,
            requirements: Default::default(),
        };
        let n = wanted(&p, Load { in_flight, requests_per_second: rps });
        prop_assert!(n >= p.min_instances && n <= p.max_instances);
        if in_flight > 0.0 {
            prop_assert!(n >= 1);
        }
    }
}
