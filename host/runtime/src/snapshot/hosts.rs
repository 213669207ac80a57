//! The hosts of a lattice snapshot, with an index from each label to the hosts that carry it.
//!
//! A placement asks for the hosts with some labels on every call that places instances. At
//! 10,000 hosts, testing every host's labels on each call was most of a deploy's cost
//! (docs/scale.md), so the hosts carrying a label are looked up instead: a query costs the
//! hosts of its rarest label, not the lattice. The directory is built once from the hosts and
//! never changed after; the controller shares one between its passes (behind an `Arc`) until
//! hosts come, go or change labels.

use std::collections::HashMap;

use crate::bindings::{HostInfo, Pair};

/// Hosts ordered by id, indexed by label. A host is named by its position in that order.
#[derive(Debug, Clone, Default)]
pub struct HostDirectory {
    hosts: Vec<HostInfo>,
    /// The logical time (ms, as a snapshot's `now_ms`) the hosts' uptimes were read at: a
    /// snapshot taken later adds the time since, so a shared directory's uptimes stay true.
    read_at_ms: u64,
    /// Label key → value → positions of the hosts carrying it, ascending.
    labels: HashMap<String, HashMap<String, Vec<u32>>>,
}

impl HostDirectory {
    /// The directory of `hosts`. A host id given twice keeps its last description.
    pub fn new(hosts: impl IntoIterator<Item = HostInfo>) -> Self {
        let mut hosts: Vec<HostInfo> = hosts.into_iter().collect();
        // Stable, so that of equal ids the last given stays last; then keep that one.
        hosts.sort_by(|a, b| a.id.cmp(&b.id));
        hosts.reverse();
        hosts.dedup_by(|later, earlier| later.id == earlier.id);
        hosts.reverse();
        let mut labels: HashMap<String, HashMap<String, Vec<u32>>> = HashMap::new();
        for (position, host) in hosts.iter().enumerate() {
            for label in &host.labels {
                let positions = labels
                    .entry(label.key.clone())
                    .or_default()
                    .entry(label.value.clone())
                    .or_default();
                // A label listed twice on one host names it once.
                if positions.last() != Some(&(position as u32)) {
                    positions.push(position as u32);
                }
            }
        }
        Self {
            hosts,
            read_at_ms: 0,
            labels,
        }
    }

    /// Says when the hosts' uptimes were read (logical ms, as a snapshot's `now_ms`).
    pub fn read_at(mut self, ms: u64) -> Self {
        self.read_at_ms = ms;
        self
    }

    pub fn read_at_ms(&self) -> u64 {
        self.read_at_ms
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Every host, ordered by id.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &HostInfo> {
        self.hosts.iter()
    }

    pub fn get(&self, id: &str) -> Option<&HostInfo> {
        self.position(id).map(|at| &self.hosts[at as usize])
    }

    pub fn contains(&self, id: &str) -> bool {
        self.position(id).is_some()
    }

    /// The host at `position` (from [`HostDirectory::matching`]).
    pub fn at(&self, position: u32) -> &HostInfo {
        &self.hosts[position as usize]
    }

    fn position(&self, id: &str) -> Option<u32> {
        self.hosts
            .binary_search_by(|h| h.id.as_str().cmp(id))
            .ok()
            .map(|at| at as u32)
    }

    /// The positions of the hosts carrying every label of `requirements`, ascending (that is,
    /// by host id). The rarest label's hosts are walked and the others looked up in theirs,
    /// so this costs what it returns (times the number of labels), not the lattice.
    pub fn matching(&self, requirements: &[Pair]) -> Vec<u32> {
        if requirements.is_empty() {
            return (0..self.hosts.len() as u32).collect();
        }
        let mut lists = Vec::with_capacity(requirements.len());
        for r in requirements {
            match self
                .labels
                .get(&r.key)
                .and_then(|values| values.get(&r.value))
            {
                Some(positions) => lists.push(positions.as_slice()),
                None => return Vec::new(),
            }
        }
        lists.sort_by_key(|l| l.len());
        let (rarest, others) = lists.split_first().expect("one list per requirement");
        rarest
            .iter()
            .copied()
            .filter(|p| others.iter().all(|l| l.binary_search(p).is_ok()))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::snapshot::host_matches;
    use proptest::prelude::*;

    pub(crate) fn host(id: &str, labels: &[(&str, &str)]) -> HostInfo {
        HostInfo {
            id: id.into(),
            friendly_name: id.into(),
            labels: labels
                .iter()
                .map(|(k, v)| Pair {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            uptime_seconds: 0,
        }
    }

    fn pair(key: &str, value: &str) -> Pair {
        Pair {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn hosts_are_ordered_by_id_and_the_last_description_wins() {
        let dir = HostDirectory::new([
            host("b", &[]),
            host("a", &[("zone", "1")]),
            host("b", &[("zone", "2")]),
        ]);
        let ids: Vec<&str> = dir.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(dir.get("b").unwrap().labels[0].value, "2");
        assert!(dir.get("c").is_none());
        assert_eq!(dir.matching(&[pair("zone", "2")]), [1]);
        assert!(dir.matching(&[pair("zone", "3")]).is_empty());
    }

    fn labels() -> impl Strategy<Value = Vec<(String, String)>> {
        prop::collection::vec(("[ab]", "[xyz]"), 0..4)
    }

    proptest! {
        /// The index answers exactly what testing every host's labels answers.
        #[test]
        fn the_index_agrees_with_testing_every_host(
            hosts in prop::collection::vec(("[a-f]", labels()), 0..24),
            wanted in labels(),
        ) {
            let hosts: Vec<HostInfo> = hosts
                .iter()
                .map(|(id, l)| {
                    let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    host(id, &l)
                })
                .collect();
            let requirements: Vec<Pair> = wanted.iter().map(|(k, v)| pair(k, v)).collect();
            let dir = HostDirectory::new(hosts);
            let indexed: Vec<&str> = dir
                .matching(&requirements)
                .into_iter()
                .map(|p| dir.at(p).id.as_str())
                .collect();
            let scanned: Vec<&str> = dir
                .iter()
                .filter(|h| host_matches(h, &requirements))
                .map(|h| h.id.as_str())
                .collect();
            prop_assert_eq!(indexed, scanned);
        }
    }
}
