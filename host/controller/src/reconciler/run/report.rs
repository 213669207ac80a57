//! The answer to `hosts.get`: the hosts this loop knows, with their health, resources and
//! (when asked) recent history, and the hosts it lately found unreachable.

use std::time::Instant;

use trellis_lattice::api::{ComponentReport, HostHealth, HostReport, HostsRequest, HostsResponse};

use super::Reconciler;
use crate::health::Health;
use crate::history::SAMPLE_INTERVAL;

/// The most a `hosts.get` answer may hold with history, in bytes: NATS carries 1 MiB in one
/// message by default, and an answer with history runs about 4 KiB per host. Past this, the
/// history is left out (and the answer says so).
const MAX_ANSWER_BYTES: usize = 900 << 10;

pub(crate) fn wire_health(health: Health) -> HostHealth {
    match health {
        Health::Healthy => HostHealth::Healthy,
        Health::Suspect => HostHealth::Suspect,
        Health::Unreachable => HostHealth::Unreachable,
    }
}

impl Reconciler {
    pub(super) fn hosts_report(&self, request: &HostsRequest, now: Instant) -> HostsResponse {
        let mut hosts: Vec<HostReport> = self
            .state
            .hosts
            .iter()
            .map(|(id, host)| HostReport {
                host_id: id.clone(),
                friendly_name: host.friendly_name.clone(),
                health: wire_health(host.health.health),
                health_seconds: now.saturating_duration_since(host.health.since).as_secs(),
                last_seen_ms: now.saturating_duration_since(host.last_seen).as_millis() as u64,
                instances: host.instances(),
                resources: host.resources.clone(),
                history: if request.history {
                    self.history.host(id, now)
                } else {
                    Vec::new()
                },
            })
            .collect();
        hosts.extend(self.state.departed().map(|(id, left)| HostReport {
            host_id: id.to_string(),
            health: HostHealth::Unreachable,
            health_seconds: now.saturating_duration_since(left).as_secs(),
            last_seen_ms: now.saturating_duration_since(left).as_millis() as u64
                + self.settings.host_timeout.as_millis() as u64,
            ..HostReport::default()
        }));
        hosts.sort_by(|a, b| a.host_id.cmp(&b.host_id));
        let components = if request.history {
            self.history
                .components(now)
                .map(|(id, history)| ComponentReport {
                    component_id: id.to_string(),
                    history,
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut response = HostsResponse {
            message: String::new(),
            hosts,
            components,
            sample_seconds: SAMPLE_INTERVAL.as_secs() as u32,
        };
        if request.history
            && serde_json::to_vec(&response).map_or(0, |b| b.len()) > MAX_ANSWER_BYTES
        {
            for host in &mut response.hosts {
                host.history.clear();
            }
            response.components.clear();
            response.message = format!(
                "history left out: with it, the answer would exceed {} KiB (one NATS message)",
                MAX_ANSWER_BYTES >> 10
            );
        }
        response
    }
}
