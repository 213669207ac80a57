//! What a plugin may ask of the host: the `lattice-view` resource's queries, placement
//! ranking and logging, as contract 0.2.0 defines them (`compat.rs` serves 0.1.0's through
//! these).

use std::sync::Arc;

use wasmtime::component::Resource;

use crate::bindings::scaler::trellis::plugin::{lattice, log, placement_ranking, types};
use crate::bindings::{
    ComponentCount, ComponentInstance, CountTable, HostCount, HostInfo, HostTable, Link, Pair,
    PlacementRequest, ProviderInstance,
};
use crate::sandbox::{State, ERROR_LINES};
use crate::snapshot::LatticeSnapshot;

impl types::Host for State {}
impl lattice::Host for State {}

impl State {
    fn view(&self, res: &Resource<Arc<LatticeSnapshot>>) -> wasmtime::Result<&LatticeSnapshot> {
        Ok(self.table.get(res)?.as_ref())
    }
}

impl lattice::HostLatticeView for State {
    fn hosts(&mut self, this: Resource<Arc<LatticeSnapshot>>) -> wasmtime::Result<Vec<HostInfo>> {
        Ok(self.view(&this)?.hosts())
    }

    fn host(
        &mut self,
        this: Resource<Arc<LatticeSnapshot>>,
        id: String,
    ) -> wasmtime::Result<Option<HostInfo>> {
        Ok(self.view(&this)?.host(&id))
    }

    fn hosts_by_id(
        &mut self,
        this: Resource<Arc<LatticeSnapshot>>,
        ids: Vec<String>,
    ) -> wasmtime::Result<Vec<Option<HostInfo>>> {
        Ok(self.view(&this)?.hosts_by_id(&ids))
    }

    fn hosts_matching(
        &mut self,
        this: Resource<Arc<LatticeSnapshot>>,
        requirements: Vec<Pair>,
    ) -> wasmtime::Result<Vec<HostInfo>> {
        Ok(self.view(&this)?.hosts_matching(&requirements))
    }

    fn host_count(&mut self, this: Resource<Arc<LatticeSnapshot>>) -> wasmtime::Result<u32> {
        Ok(self.view(&this)?.host_count() as u32)
    }

    fn component_instances(
        &mut self,
        this: Resource<Arc<LatticeSnapshot>>,
        component_id: String,
    ) -> wasmtime::Result<Vec<ComponentInstance>> {
        Ok(self.view(&this)?.component_instances(&component_id))
    }

    fn component_counts(
        &mut self,
        this: Resource<Arc<LatticeSnapshot>>,
        component_id: String,
    ) -> wasmtime::Result<Vec<ComponentCount>> {
        Ok(self.view(&this)?.component_counts(&component_id))
    }

    fn hosts_by_id_packed(
        &mut self,
        this: Resource<Arc<LatticeSnapshot>>,
        ids: Vec<String>,
    ) -> wasmtime::Result<HostTable> {
        Ok(self.view(&this)?.host_table(&ids))
    }

    fn component_counts_packed(
        &mut self,
        this: Resource<Arc<LatticeSnapshot>>,
        component_id: String,
    ) -> wasmtime::Result<CountTable> {
        Ok(self.view(&this)?.count_table(&component_id))
    }

    fn provider_instances(
        &mut self,
        this: Resource<Arc<LatticeSnapshot>>,
        provider_id: String,
    ) -> wasmtime::Result<Vec<ProviderInstance>> {
        Ok(self.view(&this)?.provider_instances(&provider_id))
    }

    fn links_from(
        &mut self,
        this: Resource<Arc<LatticeSnapshot>>,
        source_id: String,
    ) -> wasmtime::Result<Vec<Link>> {
        Ok(self.view(&this)?.links_from(&source_id))
    }

    fn config(
        &mut self,
        this: Resource<Arc<LatticeSnapshot>>,
        name: String,
    ) -> wasmtime::Result<Option<Vec<Pair>>> {
        Ok(self.view(&this)?.configs.get(&name).cloned())
    }

    fn now_ms(&mut self, this: Resource<Arc<LatticeSnapshot>>) -> wasmtime::Result<u64> {
        Ok(self.view(&this)?.now_ms)
    }

    fn instance_counts(
        &mut self,
        this: Resource<Arc<LatticeSnapshot>>,
        component_id: Option<String>,
    ) -> wasmtime::Result<Vec<HostCount>> {
        Ok(self
            .view(&this)?
            .instance_counts(component_id.as_deref())
            .into_iter()
            .map(|(host, count)| HostCount {
                host_id: host.to_string(),
                count: u32::try_from(count).unwrap_or(u32::MAX),
            })
            .collect())
    }

    fn host_vitals(
        &mut self,
        this: Resource<Arc<LatticeSnapshot>>,
        ids: Vec<String>,
    ) -> wasmtime::Result<Vec<Option<types::HostVitals>>> {
        Ok(self.view(&this)?.host_vitals(&ids))
    }

    fn component_traffic(
        &mut self,
        this: Resource<Arc<LatticeSnapshot>>,
        component_id: String,
    ) -> wasmtime::Result<Vec<types::Traffic>> {
        Ok(self.view(&this)?.component_traffic(&component_id))
    }

    fn drop(&mut self, this: Resource<Arc<LatticeSnapshot>>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl placement_ranking::Host for State {
    fn rank_hosts(&mut self, request: PlacementRequest) -> wasmtime::Result<Vec<String>> {
        let Some(snapshot) = self.snapshot.clone() else {
            return Ok(Vec::new());
        };
        // A failing placement plugin fails the scaler call that asked, with its own reason.
        crate::placement::rank(&self.placements, &snapshot, &request)
            .map_err(|e| wasmtime::Error::msg(e.to_string()))
    }
}

impl log::Host for State {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let plugin = &*self.plugin;
        match level {
            log::Level::Trace => tracing::trace!(plugin, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
        if level == log::Level::Error {
            if self.errors.len() == ERROR_LINES {
                self.errors.pop_front();
            }
            self.errors.push_back(message);
        }
        Ok(())
    }
}
