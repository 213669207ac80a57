//! Control-interface requests and commands. The first byte picks the mode:
//! - even: the rest is `lattice\nsubject tail\nbody` for `decode`: never a panic; a request that
//!   reads as a command is sent again (`encode`) on the same subject and reads back the same;
//! - odd: the rest builds a command and an origin; `decode(encode(c))` is `c` (a config's
//!   entries come back sorted by key, one value per key) from the same origin (scale and start
//!   requests carry it, the others none).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use trellis_controller::commands::{decode, encode, Origin};
use trellis_fuzz::on_the_wire;
use trellis_lattice::ctl::Subjects;
use trellis_runtime::bindings::{
    Command, DeleteLink, Link, Pair, PutConfig, ScaleComponent, StartProvider, StopProvider,
};

/// The bindings' types have no `PartialEq`; their `Debug` shows every field.
fn same(a: &Command, b: &Command) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

fn command(u: &mut Unstructured) -> arbitrary::Result<Command> {
    Ok(match u.int_in_range(0..=6)? {
        0 => Command::ScaleComponent(ScaleComponent {
            host_id: u.arbitrary()?,
            component_id: u.arbitrary()?,
            image: u.arbitrary()?,
            count: u.arbitrary()?,
            config: u.arbitrary()?,
        }),
        1 => Command::StartProvider(StartProvider {
            host_id: u.arbitrary()?,
            provider_id: u.arbitrary()?,
            image: u.arbitrary()?,
            config: u.arbitrary()?,
        }),
        2 => Command::StopProvider(StopProvider {
            host_id: u.arbitrary()?,
            provider_id: u.arbitrary()?,
        }),
        3 => Command::PutLink(Link {
            source_id: u.arbitrary()?,
            target: u.arbitrary()?,
            name: u.arbitrary()?,
            wit_namespace: u.arbitrary()?,
            wit_package: u.arbitrary()?,
            interfaces: u.arbitrary()?,
            source_config: u.arbitrary()?,
            target_config: u.arbitrary()?,
        }),
        4 => Command::DeleteLink(DeleteLink {
            source_id: u.arbitrary()?,
            name: u.arbitrary()?,
            wit_namespace: u.arbitrary()?,
            wit_package: u.arbitrary()?,
        }),
        5 => {
            let entries: Vec<(String, String)> = u.arbitrary()?;
            Command::PutConfig(PutConfig {
                name: u.arbitrary()?,
                entries: entries
                    .into_iter()
                    .map(|(key, value)| Pair { key, value })
                    .collect(),
            })
        }
        _ => Command::DeleteConfig(u.arbitrary()?),
    })
}

fn decoded_requests(data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let lattice = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let tail = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let body = parts.next().unwrap_or_default();
    let subjects = Subjects::new(&lattice);
    let subject = format!("{}.{tail}", subjects.prefix());
    if let Some((command, origin)) = decode(&subjects, &subject, body) {
        let (again, body) = encode(&subjects, &command, &origin);
        assert_eq!(again, subject);
        let (back, from) = decode(&subjects, &again, &body).expect("what encode sends decodes");
        assert!(same(&back, &command), "{back:?} != {command:?}");
        assert_eq!(from, origin);
    }
    let _ = decode(&subjects, &tail, body);
}

fn encoded_commands(data: &[u8]) -> arbitrary::Result<()> {
    let mut u = Unstructured::new(data);
    let lattice = String::arbitrary(&mut u)?;
    let command = command(&mut u)?;
    let origin = Origin {
        app: u.arbitrary()?,
        scaler: u.arbitrary()?,
    };
    let subjects = Subjects::new(&lattice);
    let (subject, body) = encode(&subjects, &command, &origin);
    let (back, from) = decode(&subjects, &subject, &body).expect("what encode sends decodes");
    let want = on_the_wire(&command);
    assert!(same(&back, &want), "{want:?} came back as {back:?}");
    let carried = matches!(
        command,
        Command::ScaleComponent(_) | Command::StartProvider(_)
    );
    if carried {
        assert_eq!(from, origin);
    } else {
        assert!(from.app.is_empty() && from.scaler.is_empty(), "{from:?}");
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        decoded_requests(rest);
    } else {
        let _ = encoded_commands(rest);
    }
});
