//! Any bytes as a lattice event. The first byte picks the mode:
//! - even: the rest is a whole CloudEvent envelope (JSON);
//! - odd: the second byte picks an event kind, the rest is its `data` (JSON, or else a string).
//!
//! Deserialising and `decode` never panic; an event that decodes is applied to a lattice state
//! (holding one host already), and the state keeps its invariants (see `src/lib.rs`).
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use trellis_controller::state::LatticeState;
use trellis_fuzz::{check_snapshot, check_touched, view};
use trellis_lattice::ctl::ComponentDescription;
use trellis_lattice::event::{self, CloudEvent, Event, HostHeartbeat};

/// Every kind the lattice decodes, and one it does not.
fn kind_named(n: u8) -> &'static str {
    event::KINDS
        .get(usize::from(n) % (event::KINDS.len() + 1))
        .copied()
        .unwrap_or("something_else")
}

fn envelope(data: &[u8]) -> Option<CloudEvent> {
    let (&mode, rest) = data.split_first()?;
    if mode % 2 == 0 {
        return serde_json::from_slice(rest).ok();
    }
    let (&kind, rest) = rest.split_first()?;
    let kind = kind_named(kind);
    let data = serde_json::from_slice(rest)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(rest).into()));
    Some(CloudEvent {
        specversion: "1.0".into(),
        id: "1".into(),
        event_type: format!("{}{kind}", event::TYPE_PREFIX),
        source: "NHOST".into(),
        datacontenttype: None,
        time: None,
        data,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(envelope) = envelope(data) else {
        return;
    };
    let _ = envelope.kind();
    let Ok(event) = envelope.decode() else {
        return;
    };
    let now = Instant::now();
    let mut state = LatticeState::default();
    let heartbeat = HostHeartbeat {
        components: vec![ComponentDescription {
            id: "echo".into(),
            max_instances: 2,
            ..Default::default()
        }],
        ..Default::default()
    };
    state.apply("NHOST", &Event::HostHeartbeat(heartbeat), now);
    let before = view(&state.snapshot(0));
    let touched = state.apply(&envelope.source, &event, now);
    let after = view(&state.snapshot(0));
    check_touched(&before, &after, &touched);
    check_snapshot(&state.snapshot(0));
});
