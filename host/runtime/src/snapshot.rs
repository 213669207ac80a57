//! The lattice as a plugin sees it: an immutable snapshot the controller builds once per
//! reconcile pass and shares (behind an `Arc`) with every plugin call of that pass.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::bindings::{
    ComponentCount, ComponentInstance, CountRow, CountTable, HostInfo, HostRow, HostTable,
    LabelRow, Link, Pair, ProviderInstance, Span,
};

/// A read-only picture of the lattice. Vectors are kept sorted by host id so that every query
/// answers in a stable order, which keeps plugin decisions reproducible.
#[derive(Debug, Clone, Default)]
pub struct LatticeSnapshot {
    pub hosts: BTreeMap<String, HostInfo>,
    /// Component id → instances, ordered by host id.
    pub components: BTreeMap<String, Vec<ComponentInstance>>,
    /// Provider id → instances, ordered by host id.
    pub providers: BTreeMap<String, Vec<ProviderInstance>>,
    /// Source id → links.
    pub links: BTreeMap<String, Vec<Link>>,
    pub configs: BTreeMap<String, Vec<Pair>>,
    /// Logical time of the pass, in milliseconds.
    pub now_ms: u64,
}

/// What a plugin's `lattice-view` resource points at.
pub type LatticeHandle = Arc<LatticeSnapshot>;

impl LatticeSnapshot {
    pub fn hosts_matching(&self, requirements: &[Pair]) -> Vec<HostInfo> {
        self.hosts
            .values()
            .filter(|h| host_matches(h, requirements))
            .cloned()
            .collect()
    }

    pub fn component_instances(&self, id: &str) -> Vec<ComponentInstance> {
        self.components.get(id).cloned().unwrap_or_default()
    }

    /// Where component `id` runs, without its id and annotations (see `component-counts`).
    pub fn component_counts(&self, id: &str) -> Vec<ComponentCount> {
        self.components
            .get(id)
            .into_iter()
            .flatten()
            .map(|i| ComponentCount {
                host_id: i.host_id.clone(),
                image: i.image.clone(),
                count: i.count,
            })
            .collect()
    }

    /// The hosts of `ids`, position by position; `None` where the lattice has no such host.
    pub fn hosts_by_id(&self, ids: &[String]) -> Vec<Option<HostInfo>> {
        ids.iter().map(|id| self.hosts.get(id).cloned()).collect()
    }

    /// `hosts_by_id` packed: every string in one buffer, so that lowering the answer into a
    /// plugin is three allocations in it rather than five per host (see `host-table`).
    pub fn host_table(&self, ids: &[String]) -> HostTable {
        let mut text = Text::default();
        let mut labels = Vec::new();
        let hosts = ids
            .iter()
            .map(|id| {
                let host = self.hosts.get(id)?;
                let first_label = labels.len() as u32;
                labels.extend(host.labels.iter().map(|l| LabelRow {
                    key: text.push(&l.key),
                    value: text.push(&l.value),
                }));
                Some(HostRow {
                    id: text.push(&host.id),
                    friendly_name: text.push(&host.friendly_name),
                    first_label,
                    label_count: host.labels.len() as u32,
                    uptime_seconds: host.uptime_seconds,
                })
            })
            .collect();
        HostTable {
            text: text.0,
            hosts,
            labels,
        }
    }

    /// `component_counts` packed likewise (see `count-table`).
    pub fn count_table(&self, id: &str) -> CountTable {
        let mut text = Text::default();
        let counts = self
            .components
            .get(id)
            .into_iter()
            .flatten()
            .map(|i| CountRow {
                host_id: text.push(&i.host_id),
                image: text.push(&i.image),
                count: i.count,
            })
            .collect();
        CountTable {
            text: text.0,
            counts,
        }
    }

    pub fn provider_instances(&self, id: &str) -> Vec<ProviderInstance> {
        self.providers.get(id).cloned().unwrap_or_default()
    }

    pub fn links_from(&self, source: &str) -> Vec<Link> {
        self.links.get(source).cloned().unwrap_or_default()
    }

    /// Instances per host: of component or provider `id`, or of anything when `None`.
    /// Placement ranks every candidate host by these, so they are counted in one pass rather
    /// than rescanned per host.
    pub fn instance_counts(&self, id: Option<&str>) -> BTreeMap<&str, u64> {
        let (components, providers): (Vec<&Vec<ComponentInstance>>, Vec<&Vec<ProviderInstance>>) =
            match id {
                Some(id) => (
                    self.components.get(id).into_iter().collect(),
                    self.providers.get(id).into_iter().collect(),
                ),
                None => (
                    self.components.values().collect(),
                    self.providers.values().collect(),
                ),
            };
        let mut counts = BTreeMap::new();
        let component_hosts = components
            .into_iter()
            .flatten()
            .map(|i| (i.host_id.as_str(), u64::from(i.count)));
        let provider_hosts = providers
            .into_iter()
            .flatten()
            .map(|i| (i.host_id.as_str(), 1));
        for (host, n) in component_hosts.chain(provider_hosts) {
            *counts.entry(host).or_insert(0) += n;
        }
        counts
    }
}

/// The string buffer of a packed answer.
#[derive(Default)]
struct Text(String);

impl Text {
    /// Appends `s` and says where it is. Strings are not shared between spans: the buffer is
    /// copied into the plugin in one piece, so a repeated image or label costs bytes only.
    fn push(&mut self, s: &str) -> Span {
        let start = self.0.len() as u32;
        self.0.push_str(s);
        Span {
            start,
            len: s.len() as u32,
        }
    }
}

pub fn host_matches(host: &HostInfo, requirements: &[Pair]) -> bool {
    requirements.iter().all(|r| {
        host.labels
            .iter()
            .any(|l| l.key == r.key && l.value == r.value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str) -> HostInfo {
        HostInfo {
            id: id.into(),
            friendly_name: format!("node {id}"),
            labels: vec![Pair {
                key: "zone".into(),
                value: id.into(),
            }],
            uptime_seconds: 1,
        }
    }

    fn instance(host: &str, image: &str, count: u32) -> ComponentInstance {
        ComponentInstance {
            host_id: host.into(),
            component_id: "app-web".into(),
            image: image.into(),
            count,
            annotations: vec![Pair {
                key: "wasmcloud.dev/appspec".into(),
                value: "app".into(),
            }],
        }
    }

    #[test]
    fn batched_queries_answer_position_by_position() {
        let mut snap = LatticeSnapshot::default();
        for id in ["a", "b"] {
            snap.hosts.insert(id.into(), host(id));
        }
        snap.components.insert(
            "app-web".into(),
            vec![instance("a", "old", 2), instance("b", "new", 1)],
        );

        let ids = ["b", "gone", "a"].map(String::from);
        let hosts = snap.hosts_by_id(&ids);
        assert_eq!(hosts.len(), 3);
        assert_eq!(hosts[0].as_ref().map(|h| h.id.as_str()), Some("b"));
        assert!(hosts[1].is_none());
        assert_eq!(
            hosts[2].as_ref().map(|h| h.labels[0].value.as_str()),
            Some("a")
        );
        assert!(snap.hosts_by_id(&[]).is_empty());

        let counts = snap.component_counts("app-web");
        let counts: Vec<(&str, &str, u32)> = counts
            .iter()
            .map(|c| (c.host_id.as_str(), c.image.as_str(), c.count))
            .collect();
        assert_eq!(counts, [("a", "old", 2), ("b", "new", 1)]);
        assert!(snap.component_counts("other").is_empty());
    }

    fn unpack<'a>(text: &'a str, span: &Span) -> &'a str {
        &text[span.start as usize..(span.start + span.len) as usize]
    }

    /// The packed answers carry exactly what the plain ones do, position by position.
    #[test]
    fn packed_answers_unpack_to_the_plain_ones() {
        let mut snap = LatticeSnapshot::default();
        for id in ["a", "b", "c"] {
            snap.hosts.insert(id.into(), host(id));
        }
        let mut bare = host("d");
        bare.labels.clear();
        snap.hosts.insert("d".into(), bare);
        snap.components.insert(
            "app-web".into(),
            vec![instance("a", "old", 2), instance("c", "", 1)],
        );

        let ids = ["c", "gone", "d", "a"].map(String::from);
        let table = snap.host_table(&ids);
        let unpacked: Vec<Option<HostInfo>> = table
            .hosts
            .iter()
            .map(|row| {
                row.as_ref().map(|row| HostInfo {
                    id: unpack(&table.text, &row.id).into(),
                    friendly_name: unpack(&table.text, &row.friendly_name).into(),
                    labels: table.labels[row.first_label as usize..][..row.label_count as usize]
                        .iter()
                        .map(|l| Pair {
                            key: unpack(&table.text, &l.key).into(),
                            value: unpack(&table.text, &l.value).into(),
                        })
                        .collect(),
                    uptime_seconds: row.uptime_seconds,
                })
            })
            .collect();
        // The bindings' types have no `PartialEq`; their debug forms show every field.
        assert_eq!(
            format!("{unpacked:?}"),
            format!("{:?}", snap.hosts_by_id(&ids))
        );
        assert!(snap.host_table(&[]).hosts.is_empty());

        let table = snap.count_table("app-web");
        let unpacked: Vec<ComponentCount> = table
            .counts
            .iter()
            .map(|row| ComponentCount {
                host_id: unpack(&table.text, &row.host_id).into(),
                image: unpack(&table.text, &row.image).into(),
                count: row.count,
            })
            .collect();
        assert_eq!(
            format!("{unpacked:?}"),
            format!("{:?}", snap.component_counts("app-web"))
        );
        assert!(snap.count_table("other").counts.is_empty());
    }
}
