//! What a command is, apart from sending it: who asked for it ([`Origin`]), what it changes
//! ([`command_key`]), the control-interface request that carries it ([`encode`], [`decode`]),
//! whether the lattice state shows it done ([`satisfied`]) and how a snapshot looks once it is
//! ([`overlay`]).
//!
//! All pure functions of a command. They sit here, not in the executor or the state, so that
//! the state holds only facts, the executor only what is in flight, and neither imports the
//! other.

use std::collections::BTreeMap;

use trellis_lattice::annotations;
use trellis_lattice::ctl::{
    self, DeleteLinkRequest, ScaleComponentCommand, StartProviderCommand, StopProviderCommand,
};
use trellis_runtime::bindings::{
    Command, DeleteLink, Pair, ProviderInstance, PutConfig, ScaleComponent, StartProvider,
    StopProvider,
};
use trellis_runtime::LatticeSnapshot;

use crate::state::{from_wit_link, to_wit_link, LatticeState};

/// Who asked for a command.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub app: String,
    pub scaler: String,
}

/// The key of commands about component `component_id` on `host_id` (also what a failure event
/// about it names).
pub fn component_key(host_id: &str, component_id: &str) -> String {
    format!("component/{host_id}/{component_id}")
}

/// The key of commands about provider `provider_id` on `host_id`.
pub fn provider_key(host_id: &str, provider_id: &str) -> String {
    format!("provider/{host_id}/{provider_id}")
}

/// The key of the thing a command changes: two commands with one key must not overlap.
pub fn command_key(command: &Command) -> String {
    match command {
        Command::ScaleComponent(c) => component_key(&c.host_id, &c.component_id),
        Command::StartProvider(c) => provider_key(&c.host_id, &c.provider_id),
        Command::StopProvider(c) => provider_key(&c.host_id, &c.provider_id),
        Command::PutLink(l) => format!(
            "link/{}",
            ctl::link_key(&l.source_id, &l.name, &l.wit_namespace, &l.wit_package)
        ),
        Command::DeleteLink(l) => format!(
            "link/{}",
            ctl::link_key(&l.source_id, &l.name, &l.wit_namespace, &l.wit_package)
        ),
        Command::PutConfig(c) => format!("config/{}", c.name),
        Command::DeleteConfig(name) => format!("config/{name}"),
    }
}

/// Whether the lattice state already shows what the command asks for.
pub fn satisfied(command: &Command, state: &LatticeState) -> bool {
    match command {
        Command::ScaleComponent(c) => {
            let running = state
                .hosts
                .get(&c.host_id)
                .and_then(|h| h.components.get(&c.component_id));
            match running {
                // A scale that also changes the image (an upgrade) is done when the host runs
                // the new image, not merely the count it already had.
                Some(running) => {
                    running.count == c.count
                        && (c.count == 0
                            || trellis_sdk::image::may_be_same(&running.image, &c.image))
                }
                None => c.count == 0,
            }
        }
        Command::StartProvider(c) => state
            .hosts
            .get(&c.host_id)
            .is_some_and(|h| h.providers.contains_key(&c.provider_id)),
        Command::StopProvider(c) => !state
            .hosts
            .get(&c.host_id)
            .is_some_and(|h| h.providers.contains_key(&c.provider_id)),
        Command::PutLink(l) => {
            let link = from_wit_link(l);
            state.links.get(&link.key()) == Some(&link)
        }
        Command::DeleteLink(l) => !state.links.contains_key(&ctl::link_key(
            &l.source_id,
            &l.name,
            &l.wit_namespace,
            &l.wit_package,
        )),
        Command::PutConfig(c) => {
            let want: BTreeMap<String, String> = c
                .entries
                .iter()
                .map(|p| (p.key.clone(), p.value.clone()))
                .collect();
            state.configs.get(&c.name) == Some(&want)
        }
        Command::DeleteConfig(name) => !state.configs.contains_key(name),
    }
}

/// Whether two commands with one key ask for the same outcome.
pub fn same_effect(a: &Command, b: &Command) -> bool {
    match (a, b) {
        (Command::ScaleComponent(a), Command::ScaleComponent(b)) => {
            a.count == b.count && a.image == b.image
        }
        (Command::StartProvider(_), Command::StartProvider(_))
        | (Command::StopProvider(_), Command::StopProvider(_))
        | (Command::DeleteLink(_), Command::DeleteLink(_))
        | (Command::DeleteConfig(_), Command::DeleteConfig(_)) => true,
        (Command::PutLink(a), Command::PutLink(b)) => from_wit_link(a) == from_wit_link(b),
        (Command::PutConfig(a), Command::PutConfig(b)) => {
            let entries = |c: &PutConfig| -> Vec<(String, String)> {
                c.entries
                    .iter()
                    .map(|p| (p.key.clone(), p.value.clone()))
                    .collect()
            };
            entries(a) == entries(b)
        }
        _ => false,
    }
}

/// Command target host, when the command concerns one host.
pub fn command_host(command: &Command) -> Option<&str> {
    match command {
        Command::ScaleComponent(c) => Some(&c.host_id),
        Command::StartProvider(c) => Some(&c.host_id),
        Command::StopProvider(c) => Some(&c.host_id),
        _ => None,
    }
}

/// The control-interface request for a command: its subject and body, annotated with the app,
/// the scaler and managed-by. `plan` shows exactly these.
pub fn encode(subjects: &ctl::Subjects, command: &Command, origin: &Origin) -> (String, Vec<u8>) {
    let annotations: BTreeMap<String, String> = [
        (annotations::MANAGED_BY, annotations::MANAGED_BY_VALUE),
        (annotations::APP, origin.app.as_str()),
        (annotations::SCALER, origin.scaler.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (subject, body) = match command {
        Command::ScaleComponent(c) => (
            subjects.component_scale(&c.host_id),
            serde_json::to_vec(&ScaleComponentCommand {
                component_ref: c.image.clone(),
                component_id: c.component_id.clone(),
                annotations: Some(annotations),
                max_instances: c.count,
                host_id: c.host_id.clone(),
                config: c.config.clone(),
                allow_update: true,
            }),
        ),
        Command::StartProvider(c) => (
            subjects.provider_start(&c.host_id),
            serde_json::to_vec(&StartProviderCommand {
                provider_id: c.provider_id.clone(),
                provider_ref: c.image.clone(),
                host_id: c.host_id.clone(),
                config: c.config.clone(),
                annotations: Some(annotations),
            }),
        ),
        Command::StopProvider(c) => (
            subjects.provider_stop(&c.host_id),
            serde_json::to_vec(&StopProviderCommand {
                host_id: c.host_id.clone(),
                provider_id: c.provider_id.clone(),
            }),
        ),
        Command::PutLink(l) => (subjects.link_put(), serde_json::to_vec(&from_wit_link(l))),
        Command::DeleteLink(l) => (
            subjects.link_del(),
            serde_json::to_vec(&DeleteLinkRequest {
                source_id: l.source_id.clone(),
                name: l.name.clone(),
                wit_namespace: l.wit_namespace.clone(),
                wit_package: l.wit_package.clone(),
            }),
        ),
        Command::PutConfig(c) => (
            subjects.config_put(&c.name),
            serde_json::to_vec(
                &c.entries
                    .iter()
                    .map(|p| (p.key.clone(), p.value.clone()))
                    .collect::<BTreeMap<_, _>>(),
            ),
        ),
        Command::DeleteConfig(name) => (subjects.config_del(name), Ok(b"{}".to_vec())),
    };
    (subject, body.unwrap_or_default())
}

/// The command a control-interface request carries, and who asked for it (from its
/// annotations; empty for requests that carry none). The inverse of [`encode`]; `None` for
/// subjects that are not commands (queries, pings).
pub fn decode(subjects: &ctl::Subjects, subject: &str, body: &[u8]) -> Option<(Command, Origin)> {
    let tail = subject.strip_prefix(subjects.prefix())?.strip_prefix('.')?;
    let parts: Vec<&str> = tail.splitn(3, '.').collect();
    let origin_of = |annotations: &Option<BTreeMap<String, String>>| {
        let get = |k: &str| {
            annotations
                .as_ref()
                .and_then(|a| a.get(k).cloned())
                .unwrap_or_default()
        };
        Origin {
            app: get(annotations::APP),
            scaler: get(annotations::SCALER),
        }
    };
    let none = Origin {
        app: String::new(),
        scaler: String::new(),
    };
    Some(match parts.as_slice() {
        ["component", "scale", host] => {
            let c: ScaleComponentCommand = serde_json::from_slice(body).ok()?;
            let origin = origin_of(&c.annotations);
            let command = Command::ScaleComponent(ScaleComponent {
                host_id: host.to_string(),
                component_id: c.component_id,
                image: c.component_ref,
                count: c.max_instances,
                config: c.config,
            });
            (command, origin)
        }
        ["provider", "start", host] => {
            let c: StartProviderCommand = serde_json::from_slice(body).ok()?;
            let origin = origin_of(&c.annotations);
            let command = Command::StartProvider(StartProvider {
                host_id: host.to_string(),
                provider_id: c.provider_id,
                image: c.provider_ref,
                config: c.config,
            });
            (command, origin)
        }
        ["provider", "stop", host] => {
            let c: StopProviderCommand = serde_json::from_slice(body).ok()?;
            let command = Command::StopProvider(StopProvider {
                host_id: host.to_string(),
                provider_id: c.provider_id,
            });
            (command, none)
        }
        ["link", "put"] => {
            let link: ctl::Link = serde_json::from_slice(body).ok()?;
            (Command::PutLink(to_wit_link(&link)), none)
        }
        ["link", "del"] => {
            let l: DeleteLinkRequest = serde_json::from_slice(body).ok()?;
            let command = Command::DeleteLink(DeleteLink {
                source_id: l.source_id,
                name: l.name,
                wit_namespace: l.wit_namespace,
                wit_package: l.wit_package,
            });
            (command, none)
        }
        ["config", "put", name] => {
            let entries: BTreeMap<String, String> = serde_json::from_slice(body).ok()?;
            let command = Command::PutConfig(PutConfig {
                name: name.to_string(),
                entries: entries
                    .into_iter()
                    .map(|(key, value)| Pair { key, value })
                    .collect(),
            });
            (command, none)
        }
        ["config", "del", name] => (Command::DeleteConfig(name.to_string()), none),
        _ => return None,
    })
}

/// Applies the effect `command` will have to `snapshot`, as if it were done: plugins then see
/// commands in flight (and those planned earlier in the same pass) as done, so they neither
/// re-plan them elsewhere nor pile every app onto the same "empty" hosts.
pub fn overlay(snapshot: &mut LatticeSnapshot, command: &Command, origin: &Origin) {
    let annotations = || {
        vec![
            Pair {
                key: annotations::APP.into(),
                value: origin.app.clone(),
            },
            Pair {
                key: annotations::SCALER.into(),
                value: origin.scaler.clone(),
            },
            Pair {
                key: annotations::MANAGED_BY.into(),
                value: annotations::MANAGED_BY_VALUE.into(),
            },
        ]
    };
    match command {
        Command::ScaleComponent(c) => {
            snapshot.scale_component(&c.component_id, &c.host_id, &c.image, c.count, annotations)
        }
        Command::StartProvider(p) => snapshot.put_provider(ProviderInstance {
            host_id: p.host_id.clone(),
            provider_id: p.provider_id.clone(),
            image: p.image.clone(),
            annotations: annotations(),
        }),
        Command::StopProvider(p) => snapshot.remove_provider(&p.provider_id, &p.host_id),
        Command::PutLink(l) => {
            let links = snapshot.links.entry(l.source_id.clone()).or_default();
            links.retain(|x| {
                (&x.name, &x.wit_namespace, &x.wit_package)
                    != (&l.name, &l.wit_namespace, &l.wit_package)
            });
            links.push(l.clone());
        }
        Command::DeleteLink(l) => {
            if let Some(links) = snapshot.links.get_mut(&l.source_id) {
                links.retain(|x| {
                    (&x.name, &x.wit_namespace, &x.wit_package)
                        != (&l.name, &l.wit_namespace, &l.wit_package)
                });
            }
        }
        Command::PutConfig(c) => {
            snapshot.configs.insert(c.name.clone(), c.entries.clone());
        }
        Command::DeleteConfig(name) => {
            snapshot.configs.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn commands_decode_from_what_encode_sends() {
        let subjects = ctl::Subjects::new("l");
        let origin = Origin {
            app: "shop".into(),
            scaler: "spreadscaler-web-0".into(),
        };
        let commands = [
            Command::ScaleComponent(ScaleComponent {
                host_id: "NHOST".into(),
                component_id: "shop-web".into(),
                image: "file:///web.wasm".into(),
                count: 3,
                config: vec!["c".into()],
            }),
            Command::StartProvider(StartProvider {
                host_id: "NHOST".into(),
                provider_id: "shop-http".into(),
                image: "builtin:http-server".into(),
                config: vec![],
            }),
            Command::PutConfig(PutConfig {
                name: "c".into(),
                entries: vec![Pair {
                    key: "k".into(),
                    value: "v".into(),
                }],
            }),
            Command::DeleteConfig("c".into()),
        ];
        for command in commands {
            let (subject, body) = encode(&subjects, &command, &origin);
            let (back, from) = decode(&subjects, &subject, &body).expect("a command");
            assert_eq!(command_key(&back), command_key(&command));
            assert_eq!(encode(&subjects, &back, &origin), (subject, body));
            if matches!(command, Command::ScaleComponent(_)) {
                assert_eq!(from, origin);
            }
        }
        assert!(decode(&subjects, "wasmbus.ctl.v1.l.host.ping", b"").is_none());
    }

    fn scale(count: u32, image: &str) -> Command {
        Command::ScaleComponent(ScaleComponent {
            host_id: "NHOST".into(),
            component_id: "shop-web".into(),
            image: image.into(),
            count,
            config: vec![],
        })
    }

    #[test]
    fn an_upgrade_is_done_when_the_new_image_runs_not_when_the_count_matches() {
        let mut state = LatticeState::default();
        let mut host = crate::state::HostState::new(Instant::now());
        host.components.insert(
            "shop-web".into(),
            crate::state::ComponentState {
                image: "file:///v1.wasm".into(),
                count: 2,
                annotations: BTreeMap::new(),
            },
        );
        state.hosts.insert("NHOST".into(), host);
        assert!(satisfied(&scale(2, "file:///v1.wasm"), &state));
        assert!(!satisfied(&scale(2, "file:///v2.wasm"), &state));
        assert!(!satisfied(&scale(0, "file:///v1.wasm"), &state));
        state.hosts.get_mut("NHOST").unwrap().components.clear();
        assert!(satisfied(&scale(0, "file:///v2.wasm"), &state));
    }

    #[test]
    fn a_later_scale_of_the_same_component_is_a_different_effect() {
        // What `observe` relies on to await the newest of a predecessor's commands.
        assert!(same_effect(&scale(3, "a"), &scale(3, "a")));
        assert!(!same_effect(&scale(3, "a"), &scale(5, "a")));
        assert!(!same_effect(&scale(3, "a"), &scale(3, "b")));
    }

    #[test]
    fn overlay_shows_a_command_as_done() {
        let origin = Origin {
            app: "shop".into(),
            scaler: "spreadscaler-web-0".into(),
        };
        let scale = |host: &str, count| {
            Command::ScaleComponent(ScaleComponent {
                host_id: host.into(),
                component_id: "shop-web".into(),
                image: "file:///web.wasm".into(),
                count,
                config: Vec::new(),
            })
        };
        let mut snap = LatticeSnapshot::default();
        overlay(&mut snap, &scale("H2", 2), &origin);
        overlay(&mut snap, &scale("H1", 1), &origin);
        let instances = snap.component_instances("shop-web");
        let hosts: Vec<(&str, u32)> = instances
            .iter()
            .map(|i| (i.host_id.as_str(), i.count))
            .collect();
        assert_eq!(hosts, [("H1", 1), ("H2", 2)], "ordered by host id");
        assert!(snap.component_instances("shop-web")[0]
            .annotations
            .iter()
            .any(|p| p.key == annotations::APP && p.value == "shop"));
        overlay(&mut snap, &scale("H1", 0), &origin);
        overlay(&mut snap, &scale("H2", 0), &origin);
        assert!(snap.component_instances("shop-web").is_empty());
    }
}
