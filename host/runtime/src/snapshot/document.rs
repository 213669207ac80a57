//! A lattice snapshot as a JSON document: what `trellis get snapshot -o json` writes and what
//! `trellis plugin run --state FILE` reads, so that the state a plugin saw in a real lattice
//! can be replayed, edited by hand, or kept as a test fixture.
//!
//! The document says everything a plugin can query (hosts, instances, links, configs, health,
//! resources, traffic) and nothing else. Only `format` and each host's `id` are required, so a
//! fixture written by hand stays short. Unknown fields are refused, so that a typo is an error
//! naming the field rather than a state silently missing something.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Health, HostDirectory, HostVitals, LatticeSnapshot, Traffic};
use crate::bindings::{ComponentInstance, HostInfo, Link, Pair, ProviderInstance};

/// The value of `format` this version writes and reads.
pub const DOCUMENT_FORMAT: &str = "trellis.lattice/v1";

/// The largest state file read: far beyond a 10,000-host lattice with its instances and traffic
/// (about 10 MiB as written), and small enough that a wrong file (a disk image, a log) is
/// refused before it is read into memory.
pub const MAX_DOCUMENT_BYTES: u64 = 256 << 20;

type Labels = BTreeMap<String, String>;

/// A lattice as a plugin sees it, in a form people and scripts read and write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatticeDocument {
    /// Always [`DOCUMENT_FORMAT`]: a later format gets a new value, not a silent misreading.
    pub format: String,
    /// The logical time of the pass, in milliseconds (what `lattice-view.now-ms` answers).
    #[serde(default)]
    pub now_ms: u64,
    pub hosts: Vec<HostEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkEntry>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, Labels>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<TrafficEntry>,
    /// Where placement's next shortlist starts (the controller carries it from pass to pass):
    /// with it, a replay on a large lattice shortlists the hosts the controller would.
    #[serde(default)]
    pub rotation: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    pub id: String,
    #[serde(default)]
    pub friendly_name: String,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub uptime_seconds: u64,
    /// `healthy` or `suspect`.
    #[serde(default)]
    pub health: Health,
    /// None: the host reports no resources (as wasmCloud hosts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vitals: Option<Resources>,
}

/// What a trellis node reports of its machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default)]
    pub cpus: u32,
    #[serde(default)]
    pub cpu_use: f64,
    #[serde(default)]
    pub process_cpu_use: f64,
    #[serde(default)]
    pub memory_total_bytes: u64,
    #[serde(default)]
    pub memory_available_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentEntry {
    pub host_id: String,
    pub component_id: String,
    #[serde(default)]
    pub image: String,
    pub count: u32,
    #[serde(default)]
    pub annotations: Labels,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    pub host_id: String,
    pub provider_id: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub annotations: Labels,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkEntry {
    pub source_id: String,
    pub target: String,
    #[serde(default = "default_link_name")]
    pub name: String,
    pub wit_namespace: String,
    pub wit_package: String,
    #[serde(default)]
    pub interfaces: Vec<String>,
    #[serde(default)]
    pub source_config: Vec<String>,
    #[serde(default)]
    pub target_config: Vec<String>,
}

fn default_link_name() -> String {
    "default".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficEntry {
    pub component_id: String,
    pub host_id: String,
    #[serde(default)]
    pub in_flight: u32,
    #[serde(default)]
    pub requests_per_second: f64,
    #[serde(default)]
    pub p50_ms: f64,
    #[serde(default)]
    pub p99_ms: f64,
    #[serde(default)]
    pub error_rate: f64,
    #[serde(default = "default_window")]
    pub window_seconds: u32,
}

fn default_window() -> u32 {
    10
}

/// What is wrong with a document, named so that the file can be fixed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DocumentError {
    #[error("`format` is `{0}`, not `{DOCUMENT_FORMAT}`: write the state with `trellis get snapshot -o json` of this version")]
    Format(String),
    #[error("host `{0}` is listed twice in `hosts`")]
    DuplicateHost(String),
    #[error(
        "{what} names host `{host}`, which is not in `hosts`: add the host or remove the entry"
    )]
    UnknownHost { what: String, host: String },
    #[error("host `{0}` is `unreachable`: a snapshot holds only `healthy` and `suspect` hosts (the controller forgets unreachable ones)")]
    Unreachable(String),
}

fn pairs(labels: &Labels) -> Vec<Pair> {
    labels
        .iter()
        .map(|(key, value)| Pair {
            key: key.clone(),
            value: value.clone(),
        })
        .collect()
}

fn labels(pairs: &[Pair]) -> Labels {
    pairs
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect()
}

impl LatticeDocument {
    /// The document of what `snapshot` holds, hosts' uptimes as of its time.
    pub fn of(snapshot: &LatticeSnapshot) -> Self {
        let hosts = snapshot
            .hosts()
            .into_iter()
            .map(|host| {
                let vitals = snapshot.vitals.host(&host.id);
                HostEntry {
                    labels: labels(&host.labels),
                    friendly_name: host.friendly_name,
                    uptime_seconds: host.uptime_seconds,
                    health: vitals.health,
                    vitals: vitals.reported.then_some(Resources {
                        cpus: vitals.cpus,
                        cpu_use: vitals.cpu_use,
                        process_cpu_use: vitals.process_cpu_use,
                        memory_total_bytes: vitals.memory_total_bytes,
                        memory_available_bytes: vitals.memory_available_bytes,
                    }),
                    id: host.id,
                }
            })
            .collect();
        let components = snapshot
            .components()
            .flat_map(|(_, instances)| instances)
            .map(|i| ComponentEntry {
                host_id: i.host_id.clone(),
                component_id: i.component_id.clone(),
                image: i.image.clone(),
                count: i.count,
                annotations: labels(&i.annotations),
            })
            .collect();
        let providers = snapshot
            .providers()
            .flat_map(|(_, instances)| instances)
            .map(|i| ProviderEntry {
                host_id: i.host_id.clone(),
                provider_id: i.provider_id.clone(),
                image: i.image.clone(),
                annotations: labels(&i.annotations),
            })
            .collect();
        let links = snapshot
            .links
            .values()
            .flatten()
            .map(|l| LinkEntry {
                source_id: l.source_id.clone(),
                target: l.target.clone(),
                name: l.name.clone(),
                wit_namespace: l.wit_namespace.clone(),
                wit_package: l.wit_package.clone(),
                interfaces: l.interfaces.clone(),
                source_config: l.source_config.clone(),
                target_config: l.target_config.clone(),
            })
            .collect();
        let configs = snapshot
            .configs
            .iter()
            .map(|(name, entries)| (name.clone(), labels(entries)))
            .collect();
        let traffic = snapshot
            .vitals
            .all_traffic()
            .map(|(component_id, t)| TrafficEntry {
                component_id: component_id.to_string(),
                host_id: t.host_id.clone(),
                in_flight: t.in_flight,
                requests_per_second: t.requests_per_second,
                p50_ms: t.p50_ms,
                p99_ms: t.p99_ms,
                error_rate: t.error_rate,
                window_seconds: t.window_seconds,
            })
            .collect();
        LatticeDocument {
            format: DOCUMENT_FORMAT.into(),
            now_ms: snapshot.now_ms,
            hosts,
            components,
            providers,
            links,
            configs,
            traffic,
            rotation: snapshot.rotation(),
        }
    }

    /// The snapshot this document describes, or what is wrong with it.
    pub fn into_snapshot(self) -> Result<LatticeSnapshot, DocumentError> {
        if self.format != DOCUMENT_FORMAT {
            return Err(DocumentError::Format(self.format));
        }
        let mut ids = BTreeSet::new();
        for host in &self.hosts {
            if !ids.insert(host.id.as_str()) {
                return Err(DocumentError::DuplicateHost(host.id.clone()));
            }
            if host.health == Health::Unreachable {
                return Err(DocumentError::Unreachable(host.id.clone()));
            }
        }
        let known = |what: String, host: &str| {
            if ids.contains(host) {
                Ok(())
            } else {
                Err(DocumentError::UnknownHost {
                    what,
                    host: host.to_string(),
                })
            }
        };
        for c in &self.components {
            known(format!("component `{}`", c.component_id), &c.host_id)?;
        }
        for p in &self.providers {
            known(format!("provider `{}`", p.provider_id), &p.host_id)?;
        }
        for t in &self.traffic {
            known(format!("traffic of `{}`", t.component_id), &t.host_id)?;
        }
        let directory = HostDirectory::new(self.hosts.iter().map(|h| HostInfo {
            id: h.id.clone(),
            friendly_name: h.friendly_name.clone(),
            labels: pairs(&h.labels),
            uptime_seconds: h.uptime_seconds,
        }))
        .read_at(self.now_ms);
        let mut snapshot = LatticeSnapshot::new(Arc::new(directory), self.now_ms);
        for h in &self.hosts {
            let r = h.vitals.unwrap_or_default();
            snapshot.vitals.set_host(
                &h.id,
                HostVitals {
                    health: h.health,
                    reported: h.vitals.is_some(),
                    cpus: r.cpus,
                    cpu_use: r.cpu_use,
                    process_cpu_use: r.process_cpu_use,
                    memory_total_bytes: r.memory_total_bytes,
                    memory_available_bytes: r.memory_available_bytes,
                },
            );
        }
        for c in self.components {
            snapshot.put_component(ComponentInstance {
                host_id: c.host_id,
                component_id: c.component_id,
                image: c.image,
                count: c.count,
                annotations: pairs(&c.annotations),
            });
        }
        for p in self.providers {
            snapshot.put_provider(ProviderInstance {
                host_id: p.host_id,
                provider_id: p.provider_id,
                image: p.image,
                annotations: pairs(&p.annotations),
            });
        }
        for l in self.links {
            snapshot
                .links
                .entry(l.source_id.clone())
                .or_default()
                .push(Link {
                    source_id: l.source_id,
                    target: l.target,
                    name: l.name,
                    wit_namespace: l.wit_namespace,
                    wit_package: l.wit_package,
                    interfaces: l.interfaces,
                    source_config: l.source_config,
                    target_config: l.target_config,
                });
        }
        snapshot.configs = self
            .configs
            .iter()
            .map(|(name, entries)| (name.clone(), pairs(entries)))
            .collect();
        for t in self.traffic {
            snapshot.vitals.add_traffic(
                &t.component_id,
                Traffic {
                    host_id: t.host_id,
                    in_flight: t.in_flight,
                    requests_per_second: t.requests_per_second,
                    p50_ms: t.p50_ms,
                    p99_ms: t.p99_ms,
                    error_rate: t.error_rate,
                    window_seconds: t.window_seconds,
                },
            );
        }
        snapshot.set_rotation(self.rotation);
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests;
