//! Links as wasmCloud 1.x hosts keep them in `LATTICEDATA_{lattice}`: one entry per source,
//! `COMPONENT_{source_id}`, holding `{"url": …, "links": [Link, …]}` (the host's "component
//! specification"). Trellis keeps them the same way so that a link put by a wasmCloud host is
//! seen by trellis nodes and controllers, and one put by trellis is seen by wasmCloud hosts.
//!
//! [`LinkTable`] is the view every reader builds from the bucket's entries: links by
//! [`Link::key`], replaced source by source as entries change.

use std::collections::BTreeMap;

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};
use trellis_lattice::ctl::Link;

/// The key prefix of a source's entry.
pub const SPEC_PREFIX: &str = "COMPONENT_";

/// The entry key holding the links from `source_id`.
pub fn spec_key(source_id: &str) -> String {
    format!("{SPEC_PREFIX}{source_id}")
}

/// One source's entry, as wasmCloud's host writes it. `url` is the component's image as the
/// host last ran it (empty when only links were put); trellis keeps whatever is there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentSpec {
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub links: Vec<Link>,
}

impl ComponentSpec {
    /// Puts `link`, replacing one with the same source, name and WIT package (what
    /// [`Link::key`] names): a link is redefined by putting it again.
    pub fn put(&mut self, link: &Link) {
        let key = link.key();
        self.links.retain(|l| l.key() != key);
        self.links.push(link.clone());
    }

    /// Removes the link with `key`; false if there was none.
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.links.len();
        self.links.retain(|l| l.key() != key);
        self.links.len() != before
    }
}

/// The lattice's links by [`Link::key`], as read from the bucket's entries. An entry replaces
/// one source's links, so the table also knows each source's keys: applying an entry costs
/// that source's links, not the lattice's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkTable {
    links: BTreeMap<String, Link>,
    /// The keys of each source's links.
    sources: BTreeMap<String, Vec<String>>,
}

impl LinkTable {
    pub fn get(&self, key: &str) -> Option<&Link> {
        self.links.get(key)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.links.contains_key(key)
    }

    pub fn values(&self) -> impl Iterator<Item = &Link> {
        self.links.values()
    }

    /// The links from `source_id`.
    pub fn from_source<'a>(&'a self, source_id: &str) -> impl Iterator<Item = &'a Link> {
        self.sources
            .get(source_id)
            .into_iter()
            .flatten()
            .filter_map(|key| self.links.get(key))
    }

    /// Applies one entry of the bucket: a source's entry replaces all links from that source.
    /// Other keys in the bucket (a host's `CLAIMS_…`) are not links. Returns whether the links
    /// changed.
    pub fn apply(&mut self, entry: &kv::Entry) -> bool {
        let Some(source_id) = entry.key.strip_prefix(SPEC_PREFIX) else {
            debug!(key = %entry.key, "not a link entry");
            return false;
        };
        let links = match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<ComponentSpec>(&entry.value) {
                Ok(spec) => spec.links,
                Err(e) => {
                    warn!(key = %entry.key, error = %e, "ignoring a component entry that is not a component specification");
                    return false;
                }
            },
            kv::Operation::Delete | kv::Operation::Purge => Vec::new(),
        };
        self.replace_source(source_id, links)
    }

    /// Replaces every link from `source_id` with `links` (only those that really come from it:
    /// an entry cannot speak for another source). Returns whether anything changed.
    pub fn replace_source(&mut self, source_id: &str, links: Vec<Link>) -> bool {
        let before: BTreeMap<String, Link> = self
            .sources
            .remove(source_id)
            .into_iter()
            .flatten()
            .filter_map(|key| self.links.remove_entry(&key))
            .collect();
        let mut after = BTreeMap::new();
        for link in links {
            if link.source_id == source_id {
                after.insert(link.key(), link);
            } else {
                warn!(
                    source_id,
                    link = %link.key(),
                    "ignoring a link stored under another source's entry"
                );
            }
        }
        let changed = after != before;
        if !after.is_empty() {
            self.sources
                .insert(source_id.to_string(), after.keys().cloned().collect());
            self.links.extend(after);
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(source: &str, name: &str, target: &str) -> Link {
        Link {
            source_id: source.into(),
            target: target.into(),
            name: name.into(),
            wit_namespace: "wasi".into(),
            wit_package: "http".into(),
            interfaces: vec!["incoming-handler".into()],
            ..Link::default()
        }
    }

    #[test]
    fn a_put_replaces_the_link_with_the_same_key() {
        let mut spec = ComponentSpec::default();
        spec.put(&link("s", "default", "a"));
        spec.put(&link("s", "other", "a"));
        spec.put(&link("s", "default", "b"));
        let targets: Vec<_> = spec.links.iter().map(|l| (&*l.name, &*l.target)).collect();
        assert_eq!(targets, [("other", "a"), ("default", "b")]);
        assert!(spec.remove(&link("s", "other", "a").key()));
        assert!(!spec.remove(&link("s", "other", "a").key()));
    }

    #[test]
    fn a_source_replaces_only_its_own_links() {
        let mut table = LinkTable::default();
        assert!(table.replace_source("s", vec![link("s", "default", "a")]));
        assert!(table.replace_source("t", vec![link("t", "default", "a")]));
        assert!(!table.replace_source("s", vec![link("s", "default", "a")]));
        // A stray link of another source in s's entry is not taken.
        assert!(table.replace_source("s", vec![link("t", "x", "a")]));
        let keys: Vec<_> = table.values().map(|l| l.source_id.clone()).collect();
        assert_eq!(keys, ["t"]);
        assert_eq!(table.from_source("s").count(), 0);
        assert_eq!(table.from_source("t").count(), 1);
    }

    #[test]
    fn the_entry_shape_is_wasmclouds() {
        // As wasmCloud 1.9's host writes it (url first, links with every field).
        let stored = r#"{"url":"file:///echo.wasm","links":[{"source_id":"http","target":"echo","name":"default","wit_namespace":"wasi","wit_package":"http","interfaces":["incoming-handler"],"source_config":["echo-http"],"target_config":[]}]}"#;
        let spec: ComponentSpec = serde_json::from_str(stored).unwrap();
        assert_eq!(spec.url, "file:///echo.wasm");
        assert_eq!(spec.links[0].source_config, ["echo-http"]);
        assert_eq!(serde_json::to_string(&spec).unwrap(), stored);
    }
}
