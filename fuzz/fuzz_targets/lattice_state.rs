//! The lattice state under any sequence of events, inventories, stalls and expiries, over a
//! few hosts and ids (so that steps meet each other), with any counts. After every step the
//! snapshot keeps its invariants and the event's answer names what changed (`src/lib.rs`);
//! a heartbeat applied twice changes nothing the second time; a stopped host is gone with all
//! it ran; an expiry forgets exactly the hosts silent for longer than the timeout.
#![no_main]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use trellis_controller::state::{LatticeState, Touched};
use trellis_fuzz::{check_snapshot, check_touched, view};
use trellis_lattice::ctl::{ComponentDescription, HostInventory, ProviderDescription};
use trellis_lattice::event::{
    ComponentScaleFailed, ComponentScaled, Event, HostHeartbeat, HostStarted, HostStopped,
    ProviderStartFailed, ProviderStarted, ProviderStopped,
};

const HOSTS: [&str; 4] = ["H1", "H2", "H3", ""];
const IDS: [&str; 3] = ["a", "b", "c"];
const PROVIDERS: [&str; 2] = ["p", "q"];
const IMAGES: [&str; 3] = ["v1", "v2", ""];

fn pick<'a>(u: &mut Unstructured, from: &[&'a str]) -> Result<&'a str> {
    Ok(*u.choose(from)?)
}

fn labels(u: &mut Unstructured) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for _ in 0..u.int_in_range(0..=2)? {
        labels.insert(
            pick(u, &["zone", "arch"])?.into(),
            pick(u, &["1", "2"])?.into(),
        );
    }
    Ok(labels)
}

fn components(u: &mut Unstructured) -> Result<Vec<ComponentDescription>> {
    (0..u.int_in_range(0..=3)?)
        .map(|_| {
            Ok(ComponentDescription {
                id: pick(u, &IDS)?.into(),
                image_ref: pick(u, &IMAGES)?.into(),
                max_instances: u.arbitrary()?,
                ..Default::default()
            })
        })
        .collect()
}

fn providers(u: &mut Unstructured) -> Result<Vec<ProviderDescription>> {
    (0..u.int_in_range(0..=2)?)
        .map(|_| {
            Ok(ProviderDescription {
                id: pick(u, &PROVIDERS)?.into(),
                image_ref: u.arbitrary::<bool>()?.then_some("v1".into()),
                ..Default::default()
            })
        })
        .collect()
}

fn heartbeat(u: &mut Unstructured) -> Result<HostHeartbeat> {
    Ok(HostHeartbeat {
        components: components(u)?,
        providers: providers(u)?,
        labels: labels(u)?,
        friendly_name: pick(u, &["x", "y"])?.into(),
        uptime_seconds: u.arbitrary()?,
        ..Default::default()
    })
}

fn event(u: &mut Unstructured) -> Result<Event> {
    Ok(match u.int_in_range(0..=8)? {
        0 => Event::HostStarted(HostStarted {
            labels: labels(u)?,
            ..Default::default()
        }),
        1 => Event::HostStopped(HostStopped::default()),
        2 => Event::HostHeartbeat(heartbeat(u)?),
        3 => Event::ComponentScaled(ComponentScaled {
            host_id: pick(u, &HOSTS)?.into(),
            component_id: pick(u, &IDS)?.into(),
            image_ref: pick(u, &IMAGES)?.into(),
            max_instances: u.arbitrary()?,
            ..Default::default()
        }),
        4 => Event::ComponentScaleFailed(ComponentScaleFailed {
            host_id: pick(u, &HOSTS)?.into(),
            component_id: pick(u, &IDS)?.into(),
            ..Default::default()
        }),
        5 => Event::ProviderStarted(ProviderStarted {
            host_id: pick(u, &HOSTS)?.into(),
            provider_id: pick(u, &PROVIDERS)?.into(),
            image_ref: pick(u, &IMAGES)?.into(),
            ..Default::default()
        }),
        6 => Event::ProviderStopped(ProviderStopped {
            host_id: pick(u, &HOSTS)?.into(),
            provider_id: pick(u, &PROVIDERS)?.into(),
            ..Default::default()
        }),
        7 => Event::ProviderStartFailed(ProviderStartFailed {
            host_id: pick(u, &HOSTS)?.into(),
            provider_id: pick(u, &PROVIDERS)?.into(),
            ..Default::default()
        }),
        _ => Event::Other,
    })
}

fn run(u: &mut Unstructured) -> Result<()> {
    let start = Instant::now();
    // Seconds after `start`; events may arrive up to 60 s late.
    let mut now: u64 = 60;
    let at = |secs: u64| start + Duration::from_secs(secs);
    let mut state = LatticeState::default();
    for _ in 0..64 {
        if u.is_empty() {
            break;
        }
        let before = view(&state.snapshot(0));
        let seen: BTreeMap<String, Instant> = state
            .hosts
            .iter()
            .map(|(id, h)| (id.clone(), h.last_seen))
            .collect();
        match u.int_in_range(0..=5)? {
            0 => {
                let source = pick(u, &HOSTS)?;
                let event = event(u)?;
                let age = u.int_in_range(0..=60)?;
                let touched = state.apply(source, &event, at(now - age));
                let after = view(&state.snapshot(0));
                check_touched(&before, &after, &touched);
                if let Event::HostStopped(_) = event {
                    assert!(!state.hosts.contains_key(source));
                    assert!(after
                        .instances
                        .values()
                        .all(|hosts| !hosts.contains_key(source)));
                }
            }
            1 => {
                let source = pick(u, &HOSTS)?;
                let heartbeat = Event::HostHeartbeat(heartbeat(u)?);
                let first = state.apply(source, &heartbeat, at(now));
                let once = view(&state.snapshot(0));
                check_touched(&before, &once, &first);
                assert_eq!(state.apply(source, &heartbeat, at(now)), Touched::Nothing);
                assert_eq!(view(&state.snapshot(0)), once);
            }
            2 => {
                let inventory = HostInventory {
                    host_id: pick(u, &HOSTS)?.into(),
                    components: components(u)?,
                    providers: providers(u)?,
                    labels: labels(u)?,
                    ..Default::default()
                };
                state.apply_inventory(&inventory, at(now));
            }
            3 => now += u.int_in_range(1..=120)?,
            4 => {
                let stalled = Duration::from_secs(u.int_in_range(0..=120)?);
                state.excuse(stalled, at(now));
                for host in state.hosts.values() {
                    assert!(host.last_seen <= at(now), "excused into the future");
                }
            }
            _ => {
                let timeout = Duration::from_secs(u.int_in_range(0..=120)?);
                let gone = state.expire_hosts(timeout, at(now));
                for id in &gone {
                    assert!(at(now).duration_since(seen[id]) > timeout);
                    assert!(!state.hosts.contains_key(id));
                }
                for host in state.hosts.values() {
                    assert!(at(now).duration_since(host.last_seen) <= timeout);
                }
                assert_eq!(gone.len() + state.hosts.len(), seen.len());
            }
        }
        check_snapshot(&state.snapshot(0));
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
