//! What the lattice-state targets check after every step: the invariants of a snapshot, and
//! that an event's answer (`Touched`) names every change a scaler could see.

use std::collections::{BTreeMap, BTreeSet};

use trellis_controller::state::Touched;
use trellis_runtime::bindings::Pair;
use trellis_runtime::LatticeSnapshot;

/// Labels or annotations as (key, value) pairs, in order.
pub type Pairs = Vec<(String, String)>;

/// One instance on one host: count (1 for a provider), image, annotations.
pub type Instance = (u32, String, Pairs);

/// Hosts with their labels, and every instance: what a scaler or a placement can see.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub hosts: BTreeMap<String, Pairs>,
    /// (`c` or `p`, id) → host → (count, image, annotations)
    pub instances: BTreeMap<(char, String), BTreeMap<String, Instance>>,
}

fn pairs(list: &[Pair]) -> Pairs {
    list.iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect()
}

pub fn view(snapshot: &LatticeSnapshot) -> View {
    let mut instances: BTreeMap<_, BTreeMap<_, _>> = BTreeMap::new();
    for (id, list) in &snapshot.components {
        for i in list {
            instances.entry(('c', id.clone())).or_default().insert(
                i.host_id.clone(),
                (i.count, i.image.clone(), pairs(&i.annotations)),
            );
        }
    }
    for (id, list) in &snapshot.providers {
        for i in list {
            instances.entry(('p', id.clone())).or_default().insert(
                i.host_id.clone(),
                (1, i.image.clone(), pairs(&i.annotations)),
            );
        }
    }
    View {
        hosts: snapshot
            .hosts
            .iter()
            .map(|(id, h)| (id.clone(), pairs(&h.labels)))
            .collect(),
        instances,
    }
}

/// Every instance on a host the snapshot has, with a count above 0, listed once per host in
/// host order (`commands::overlay` binary-searches these lists).
pub fn check_snapshot(snapshot: &LatticeSnapshot) {
    for (id, list) in &snapshot.components {
        assert!(!list.is_empty(), "component {id} listed with no instance");
        for i in list {
            assert!(
                snapshot.hosts.contains_key(&i.host_id),
                "{id} on missing host"
            );
            assert!(i.count > 0, "{id} with count 0");
            assert_eq!(&i.component_id, id);
        }
        assert!(list.windows(2).all(|w| w[0].host_id < w[1].host_id));
    }
    for (id, list) in &snapshot.providers {
        for i in list {
            assert!(
                snapshot.hosts.contains_key(&i.host_id),
                "{id} on missing host"
            );
            assert_eq!(&i.provider_id, id);
        }
        assert!(list.windows(2).all(|w| w[0].host_id < w[1].host_id));
    }
    for (id, host) in &snapshot.hosts {
        assert_eq!(&host.id, id);
    }
}

/// Hosts coming, going or changing labels is `Everything`; otherwise every id whose instances
/// changed is named.
pub fn check_touched(before: &View, after: &View, touched: &Touched) {
    if before.hosts != after.hosts {
        assert_eq!(touched, &Touched::Everything, "hosts changed");
        return;
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
            assert!(named, "{key:?} changed but the answer was {touched:?}");
        }
    }
}
