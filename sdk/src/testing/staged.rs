//! Staging what hosts report and the controller judges, for unit tests of policies of load:
//! a host's health, CPU and memory, and a component's traffic per host.

use super::TestLattice;
use crate::vitals::{Health, HostVitals, Traffic};

impl TestLattice {
    /// Sets a host's vitals (its `host_id` names the host; `instances` is counted from what
    /// runs there, whatever it says). A host without staged vitals is healthy and reports
    /// nothing.
    pub fn with_vitals(mut self, vitals: HostVitals) -> Self {
        self.vitals.insert(vitals.host_id.clone(), vitals);
        self
    }

    /// Sets a host's health, keeping its other vitals.
    pub fn with_health(mut self, host_id: &str, health: Health) -> Self {
        self.vitals
            .entry(host_id.to_string())
            .or_insert_with(|| HostVitals::unreported(host_id))
            .health = health;
        self
    }

    /// Sets a component's traffic on one host (`traffic.host_id`), replacing what was staged
    /// for that host.
    pub fn with_traffic(mut self, component_id: &str, traffic: Traffic) -> Self {
        let list = self.traffic.entry(component_id.to_string()).or_default();
        list.retain(|t| t.host_id != traffic.host_id);
        let at = list.partition_point(|t| t.host_id < traffic.host_id);
        list.insert(at, traffic);
        self
    }

    /// Drops every component's traffic (as after load stops and the hosts' windows pass).
    pub fn without_traffic(mut self) -> Self {
        self.traffic.clear();
        self
    }

    pub(super) fn health_of(&self, host_id: &str) -> Health {
        self.vitals
            .get(host_id)
            .map(|v| v.health)
            .unwrap_or_default()
    }

    /// A host's vitals, with its instances from `instances` (per host, as `counts(None)`).
    pub(super) fn vitals_of(
        &self,
        host_id: &str,
        instances: &std::collections::BTreeMap<&str, u64>,
    ) -> Option<HostVitals> {
        self.hosts.get(host_id)?;
        let mut vitals = self
            .vitals
            .get(host_id)
            .cloned()
            .unwrap_or_else(|| HostVitals::unreported(host_id));
        vitals.instances = instances.get(host_id).copied().unwrap_or(0);
        Some(vitals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lattice::Lattice;
    use crate::types::PlacementRequest;

    #[test]
    fn staged_vitals_and_traffic_read_back() {
        let lattice = TestLattice::default()
            .with_host("a", &[])
            .with_host("b", &[])
            .with_component("a", "app-web", 2)
            .with_vitals(HostVitals::reporting("a", 4, 0.5, 8 << 30, 2 << 30))
            .with_health("b", Health::Suspect)
            .with_traffic("app-web", Traffic::on("b", 5.0, 1))
            .with_traffic("app-web", Traffic::on("a", 40.0, 3));
        let ids = ["a", "b", "nope"].map(String::from);
        let vitals = lattice.host_vitals(&ids);
        let a = vitals[0].as_ref().unwrap();
        assert_eq!((a.reported, a.cpus, a.instances), (true, 4, 2));
        assert_eq!(a.free_cpus(), 2.0);
        assert_eq!(vitals[1].as_ref().unwrap().health, Health::Suspect);
        assert_eq!(vitals[2], None);
        let traffic = lattice.component_traffic("app-web");
        let hosts: Vec<&str> = traffic.iter().map(|t| t.host_id.as_str()).collect();
        assert_eq!(hosts, ["a", "b"], "ordered by host id");
        assert!(lattice
            .without_traffic()
            .component_traffic("app-web")
            .is_empty());
    }

    #[test]
    fn ranking_passes_over_suspect_hosts_while_a_healthy_one_qualifies() {
        let request = PlacementRequest {
            component_id: "app-web".into(),
            requirements: Default::default(),
        };
        let lattice = TestLattice::default()
            .with_host("a", &[])
            .with_host("b", &[])
            .with_health("a", Health::Suspect);
        assert_eq!(lattice.rank_hosts(&request), ["b"]);
        let all_suspect = lattice.with_health("b", Health::Suspect);
        assert_eq!(all_suspect.rank_hosts(&request), ["a", "b"]);
    }
}
