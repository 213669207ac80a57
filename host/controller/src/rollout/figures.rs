//! How each version of a rolling app does, from what the hosts last reported: its instances
//! (and on which health of host), and its components' traffic over the hosts' window.

use trellis_lattice::api::VersionFigures;
use trellis_lattice::manifest::ComponentType;
use trellis_lattice::Manifest;
use trellis_runtime::Health;

use crate::state::LatticeState;

/// Trait properties that say how many instances a scaler wants ([`wanted`]).
const WANTED: &[&str] = &["instances", "min_instances"];

/// The figures of `manifest`'s version, shaped as it runs at the current step (its scaling
/// traits already scaled to its share).
pub fn of(state: &LatticeState, manifest: &Manifest, shaped: &Manifest) -> VersionFigures {
    let ids: Vec<String> = manifest
        .spec
        .components
        .iter()
        .filter(|c| c.component_type == ComponentType::Component)
        .map(|c| manifest.component_id(c))
        .collect();
    let mut figures = VersionFigures {
        version: manifest.version().to_string(),
        wanted: wanted(shaped, &ids),
        ..VersionFigures::default()
    };
    for host in state.hosts.values() {
        for id in &ids {
            if let Some(component) = host.components.get(id) {
                figures.instances += component.count;
                if host.health.health != Health::Healthy {
                    figures.on_unhealthy_hosts += component.count;
                }
            }
            if let Some(traffic) = host.traffic.get(id) {
                // Counted by trellis nodes; estimated from the rate for other hosts.
                let requests = match traffic.requests {
                    0 => (traffic.requests_per_second * f64::from(traffic.window_seconds)).round(),
                    n => n as f64,
                };
                figures.requests_per_second += traffic.requests_per_second;
                figures.requests += requests as u64;
                figures.failed += (requests * traffic.error_rate).round() as u64;
                figures.p99_ms = figures.p99_ms.max(traffic.p99_ms);
            }
        }
    }
    figures
}

/// The instances the shaped manifest asks of the components `ids`: what its scalers'
/// `instances` (or an autoscaler's `min_instances`) say. A daemonscaler's count is per host,
/// so it says nothing here: such a version is ready when its instances run.
fn wanted(shaped: &Manifest, ids: &[String]) -> u32 {
    shaped
        .spec
        .components
        .iter()
        .filter(|c| ids.contains(&shaped.component_id(c)))
        .flat_map(|c| c.traits.iter().flatten())
        .filter(|t| t.trait_type != "daemonscaler")
        .filter_map(|t| {
            WANTED
                .iter()
                .find_map(|key| t.properties.get(*key)?.as_u64())
        })
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        .fold(0u32, u32::saturating_add)
}
