//! The control interface's requests as this node answers them ([`LatticeHosts`]); the server
//! that reads, checks and replies to them is shared with simulated hosts
//! ([`trellis_bus::control`]). A node is one host: it takes only the requests addressed to its
//! own id, so the host id every method is given is always its own. Each method hands the
//! request to the `Host` method of the same name, in the file of its job.

use std::sync::Arc;

use tracing::info;
use trellis_bus::control::{Auction, LatticeHosts, Offered};
use trellis_bus::lattice_data::LatticeData;
use trellis_lattice::ctl::{
    self, HostInventory, ScaleComponentCommand, StartProviderCommand, UpdateComponentCommand,
};

use super::{read, Host};

impl LatticeHosts for Host {
    fn serves(&self, host_id: &str) -> bool {
        host_id == self.id
    }

    fn lattice_data(&self) -> &LatticeData {
        &self.data
    }

    fn event_source(&self) -> String {
        self.id.clone()
    }

    fn ping(&self) -> Vec<ctl::Host> {
        vec![Host::ping(self)]
    }

    fn inventory(&self, _host_id: &str) -> Option<HostInventory> {
        Some(Host::inventory(self))
    }

    async fn stop_host(&self, _host_id: &str) {
        info!(host_id = %self.id, "stop requested over the control interface");
        let _ = self.stop_requested.send(true);
    }

    fn component_image(&self, _host_id: &str, component_id: &str) -> Option<String> {
        self.components
            .get(component_id)
            .map(|running| running.image_ref.clone())
    }

    fn bidders(&self, auction: &Auction<'_>) -> Vec<String> {
        let already_runs = match auction.offered {
            Offered::Component => self.components.get(auction.id).is_some(),
            Offered::Provider => read(&self.providers).contains_key(auction.id),
        };
        if auction.bids(&self.labels(), already_runs) {
            vec![self.id.clone()]
        } else {
            Vec::new()
        }
    }

    async fn scale_component(self: &Arc<Self>, _host_id: &str, cmd: ScaleComponentCommand) {
        // The ticket is taken here, in arrival order; loading runs in its own task.
        let ticket = self.scale_ticket(&cmd.component_id);
        tokio::spawn(self.clone().scale_in_turn(cmd, ticket));
    }

    async fn update_component(self: &Arc<Self>, _host_id: &str, cmd: UpdateComponentCommand) {
        // In line with the component's scales: the ticket now, the work in its own task.
        let ticket = self.scale_ticket(&cmd.component_id);
        tokio::spawn(self.clone().update_in_turn(cmd, ticket));
    }

    async fn start_provider(
        &self,
        _host_id: &str,
        cmd: StartProviderCommand,
    ) -> Result<Vec<String>, String> {
        Host::start_provider(self, cmd).await
    }

    async fn stop_provider(&self, _host_id: &str, provider_id: &str) -> bool {
        Host::stop_provider(self, provider_id).await
    }

    async fn put_label(&self, _host_id: &str, key: String, value: String) {
        Host::put_label(self, key, value).await
    }

    async fn delete_label(&self, _host_id: &str, key: &str) -> bool {
        Host::delete_label(self, key).await
    }
}
