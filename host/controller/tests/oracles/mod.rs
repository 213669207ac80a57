//! What the controller's property tests and its fuzz targets (`fuzz/`, which includes this
//! file) both check, written once: each check returns what is wrong, and the caller fails the
//! way it fails (a proptest case, a fuzz crash).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use trellis_controller::state::Touched;
use trellis_lattice::api::{Diagnostic, Severity};
use trellis_lattice::Manifest;
use trellis_runtime::bindings::{Command, Pair, PutConfig};
use trellis_runtime::{LatticeSnapshot, Runtime, RuntimeConfig};

/// A plugin runtime over an empty plugin folder: only the controller's own checks run.
pub fn runtime_without_plugins() -> &'static Runtime {
    static RUNTIME: OnceLock<(Runtime, tempfile::TempDir)> = OnceLock::new();
    &RUNTIME
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary plugin folder");
            let runtime = Runtime::new(RuntimeConfig {
                plugin_dir: dir.path().to_path_buf(),
                ..RuntimeConfig::default()
            })
            .expect("a plugin runtime");
            runtime.reload();
            (runtime, dir)
        })
        .0
}

/// Labels or annotations as (key, value) pairs, in order.
pub type Pairs = Vec<(String, String)>;

/// One instance on one host: count (1 for a provider), image, annotations.
pub type Instance = (u32, String, Pairs);

/// What a scaler or a placement can see of the lattice: hosts with their labels, and every
/// instance.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub hosts: BTreeMap<String, Pairs>,
    /// (`c` or `p`, id) → host → (count, image, annotations)
    pub instances: BTreeMap<(char, String), BTreeMap<String, Instance>>,
}

pub fn pairs(list: &[Pair]) -> Pairs {
    list.iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect()
}

pub fn view(snapshot: &LatticeSnapshot) -> View {
    let mut instances: BTreeMap<_, BTreeMap<_, _>> = BTreeMap::new();
    for (id, list) in snapshot.components() {
        for i in list {
            instances.entry(('c', id.clone())).or_default().insert(
                i.host_id.clone(),
                (i.count, i.image.clone(), pairs(&i.annotations)),
            );
        }
    }
    for (id, list) in snapshot.providers() {
        for i in list {
            instances.entry(('p', id.clone())).or_default().insert(
                i.host_id.clone(),
                (1, i.image.clone(), pairs(&i.annotations)),
            );
        }
    }
    View {
        hosts: snapshot
            .directory()
            .iter()
            .map(|h| (h.id.clone(), pairs(&h.labels)))
            .collect(),
        instances,
    }
}

/// Fails with `message` unless `ok`.
fn ensure(ok: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(message())
    }
}

/// What every snapshot must hold, whatever came before: every instance on a host the snapshot
/// has, components with a count above 0, listed once per host in host order
/// (`commands::overlay` binary-searches these lists).
pub fn check_snapshot(snapshot: &LatticeSnapshot) -> Result<(), String> {
    for (id, list) in snapshot.components() {
        ensure(!list.is_empty(), || {
            format!("component {id} listed with no instance")
        })?;
        for i in list {
            ensure(snapshot.contains_host(&i.host_id), || {
                format!("{id} on missing host {}", i.host_id)
            })?;
            ensure(i.count > 0, || {
                format!("{id} on {} with count 0", i.host_id)
            })?;
            ensure(&i.component_id == id, || {
                format!("{id} listed as {}", i.component_id)
            })?;
        }
        ensure(list.windows(2).all(|w| w[0].host_id < w[1].host_id), || {
            format!("{id}'s instances not in strict host order")
        })?;
    }
    for (id, list) in snapshot.providers() {
        for i in list {
            ensure(snapshot.contains_host(&i.host_id), || {
                format!("provider {id} on missing host {}", i.host_id)
            })?;
            ensure(&i.provider_id == id, || {
                format!("provider {id} listed as {}", i.provider_id)
            })?;
        }
        ensure(list.windows(2).all(|w| w[0].host_id < w[1].host_id), || {
            format!("provider {id}'s instances not in strict host order")
        })?;
    }
    // The instances per host the snapshot keeps with every change (what placement ranks by)
    // are what counting every instance gives.
    let mut counted: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, list) in snapshot.components() {
        for i in list {
            *counted.entry(i.host_id.as_str()).or_insert(0) += u64::from(i.count);
        }
    }
    for (_, list) in snapshot.providers() {
        for i in list {
            *counted.entry(i.host_id.as_str()).or_insert(0) += 1;
        }
    }
    let kept = snapshot.instance_counts(None);
    ensure(kept == counted, || {
        format!("instances per host kept as {kept:?}, counted {counted:?}")
    })?;
    Ok(())
}

/// An event's answer names every change a scaler could see: hosts coming, going or changing
/// labels is `Everything`; otherwise every component or provider id whose instances changed.
pub fn check_touched(before: &View, after: &View, touched: &Touched) -> Result<(), String> {
    if before.hosts != after.hosts {
        return ensure(touched == &Touched::Everything, || {
            format!(
                "hosts changed {:?} -> {:?} but the answer was {touched:?}",
                before.hosts, after.hosts
            )
        });
    }
    let keys: BTreeSet<&(char, String)> = before
        .instances
        .keys()
        .chain(after.instances.keys())
        .collect();
    for key in keys {
        if before.instances.get(key) != after.instances.get(key) {
            let named = match touched {
                Touched::Everything => true,
                Touched::Ids(ids) => ids.contains(&key.1),
                Touched::Nothing => false,
            };
            ensure(named, || {
                format!("{key:?} changed but the answer was {touched:?}")
            })?;
        }
    }
    Ok(())
}

/// The command as the wire keeps it: a config's entries are a JSON object, so they come back
/// sorted by key, one value per key (the last given).
pub fn on_the_wire(command: &Command) -> Command {
    match command {
        Command::PutConfig(c) => {
            let entries: BTreeMap<&str, &str> = c
                .entries
                .iter()
                .map(|p| (p.key.as_str(), p.value.as_str()))
                .collect();
            Command::PutConfig(PutConfig {
                name: c.name.clone(),
                entries: entries
                    .into_iter()
                    .map(|(k, v)| Pair {
                        key: k.into(),
                        value: v.into(),
                    })
                    .collect(),
            })
        }
        other => other.clone(),
    }
}

/// What validating any `text` must give: text that does not parse, exactly one error, about the
/// whole text; a manifest's findings errors first, one error per place at most.
pub fn check_findings(text: &str, found: &[Diagnostic]) -> Result<(), String> {
    if Manifest::parse(text).is_err() {
        ensure(found.len() == 1, || {
            format!("unparsable text gave {found:?}")
        })?;
        ensure(found[0].severity == Severity::Error, || {
            format!("unparsable text gave no error: {found:?}")
        })?;
        return ensure(found[0].path.is_empty(), || {
            format!("unparsable text's error has a path: {found:?}")
        });
    }
    ensure(
        found.windows(2).all(|w| w[0].severity <= w[1].severity),
        || format!("errors not first: {found:?}"),
    )?;
    let errors: Vec<&str> = found
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.path.as_str())
        .collect();
    let places: BTreeSet<&str> = errors.iter().copied().collect();
    ensure(places.len() == errors.len(), || {
        format!("two errors at one place: {found:?}")
    })
}
