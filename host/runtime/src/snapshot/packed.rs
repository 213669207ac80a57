//! Packed answers: the same answer as a plain query, with every string in one buffer, so that
//! lowering it into a plugin is a few allocations in its memory rather than several per row
//! (see `host-table` and `count-table` in the WIT).

use crate::bindings::{CountRow, CountTable, HostRow, HostTable, LabelRow, Span};

use super::LatticeSnapshot;

impl LatticeSnapshot {
    /// `hosts_by_id` packed: every string in one buffer, so that lowering the answer into a
    /// plugin is three allocations in it rather than five per host (see `host-table`).
    pub fn host_table(&self, ids: &[String]) -> HostTable {
        let mut text = Text::default();
        let mut labels = Vec::new();
        let hosts = ids
            .iter()
            .map(|id| {
                let host = self.host(id)?;
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

#[cfg(test)]
mod tests {
    use super::super::tests::{host, instance};
    use super::*;
    use crate::bindings::{ComponentCount, HostInfo, Pair};

    fn unpack<'a>(text: &'a str, span: &Span) -> &'a str {
        &text[span.start as usize..(span.start + span.len) as usize]
    }

    /// The packed answers carry exactly what the plain ones do, position by position.
    #[test]
    fn packed_answers_unpack_to_the_plain_ones() {
        let mut bare = host("d");
        bare.labels.clear();
        let mut snap = LatticeSnapshot::of_hosts([host("a"), host("b"), host("c"), bare]);
        snap.put_component(instance("a", "old", 2));
        snap.put_component(instance("c", "", 1));

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
