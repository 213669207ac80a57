//! Contract 0.1.0, served to the plugins built against it: its imports answer through 0.2.0's
//! (`view.rs`), which asks the same of the lattice and only added to it. What differs in
//! their exports (0.1.0's `scaler-context` has no `memo`, its `reconcile-result` no
//! `recheck-after-ms` and `memo`) is converted here, where `plugin.rs` calls them.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, Resource};

use crate::bindings::scaler::trellis::plugin::{
    lattice as now, log as now_log, placement_ranking as now_ranking,
};
use crate::bindings::v0_1::scaler::trellis::plugin::{lattice, log, placement_ranking};
use crate::bindings::{
    v0_1, ComponentCount, ComponentInstance, CountTable, HostCount, HostInfo, HostTable, Link,
    Pair, PlacementRequest, ProviderInstance, ReconcileResult, ScalerContext,
};
use crate::sandbox::State;
use crate::snapshot::LatticeSnapshot;

/// Defines 0.1.0's imports (the scaler world's, a superset of the other worlds').
pub(crate) fn add_to_linker(linker: &mut Linker<State>) -> anyhow::Result<()> {
    crate::bindings::v0_1::scaler::Scaler::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    Ok(())
}

type View = Resource<Arc<LatticeSnapshot>>;

/// A scaler context as 0.1.0 has it: without the memo (a 0.1.0 scaler never returns one).
pub(crate) fn context(ctx: &ScalerContext) -> v0_1::ScalerContext {
    v0_1::ScalerContext {
        app: ctx.app.clone(),
        version: ctx.version.clone(),
        component: ctx.component.clone(),
        components: ctx.components.clone(),
        trait_type: ctx.trait_type.clone(),
        properties: ctx.properties.clone(),
    }
}

/// A 0.1.0 reconcile result as 0.2.0 has it: no recheck, no memo.
pub(crate) fn result(old: v0_1::ReconcileResult) -> ReconcileResult {
    ReconcileResult {
        commands: old.commands,
        status: old.status,
        recheck_after_ms: None,
        memo: None,
    }
}

impl lattice::Host for State {}

impl lattice::HostLatticeView for State {
    fn hosts(&mut self, this: View) -> wasmtime::Result<Vec<HostInfo>> {
        now::HostLatticeView::hosts(self, this)
    }

    fn host(&mut self, this: View, id: String) -> wasmtime::Result<Option<HostInfo>> {
        now::HostLatticeView::host(self, this, id)
    }

    fn hosts_by_id(
        &mut self,
        this: View,
        ids: Vec<String>,
    ) -> wasmtime::Result<Vec<Option<HostInfo>>> {
        now::HostLatticeView::hosts_by_id(self, this, ids)
    }

    fn hosts_matching(
        &mut self,
        this: View,
        requirements: Vec<Pair>,
    ) -> wasmtime::Result<Vec<HostInfo>> {
        now::HostLatticeView::hosts_matching(self, this, requirements)
    }

    fn host_count(&mut self, this: View) -> wasmtime::Result<u32> {
        now::HostLatticeView::host_count(self, this)
    }

    fn component_instances(
        &mut self,
        this: View,
        component_id: String,
    ) -> wasmtime::Result<Vec<ComponentInstance>> {
        now::HostLatticeView::component_instances(self, this, component_id)
    }

    fn component_counts(
        &mut self,
        this: View,
        component_id: String,
    ) -> wasmtime::Result<Vec<ComponentCount>> {
        now::HostLatticeView::component_counts(self, this, component_id)
    }

    fn hosts_by_id_packed(&mut self, this: View, ids: Vec<String>) -> wasmtime::Result<HostTable> {
        now::HostLatticeView::hosts_by_id_packed(self, this, ids)
    }

    fn component_counts_packed(
        &mut self,
        this: View,
        component_id: String,
    ) -> wasmtime::Result<CountTable> {
        now::HostLatticeView::component_counts_packed(self, this, component_id)
    }

    fn provider_instances(
        &mut self,
        this: View,
        provider_id: String,
    ) -> wasmtime::Result<Vec<ProviderInstance>> {
        now::HostLatticeView::provider_instances(self, this, provider_id)
    }

    fn links_from(&mut self, this: View, source_id: String) -> wasmtime::Result<Vec<Link>> {
        now::HostLatticeView::links_from(self, this, source_id)
    }

    fn config(&mut self, this: View, name: String) -> wasmtime::Result<Option<Vec<Pair>>> {
        now::HostLatticeView::config(self, this, name)
    }

    fn instance_counts(
        &mut self,
        this: View,
        component_id: Option<String>,
    ) -> wasmtime::Result<Vec<HostCount>> {
        now::HostLatticeView::instance_counts(self, this, component_id)
    }

    fn now_ms(&mut self, this: View) -> wasmtime::Result<u64> {
        now::HostLatticeView::now_ms(self, this)
    }

    fn drop(&mut self, this: View) -> wasmtime::Result<()> {
        now::HostLatticeView::drop(self, this)
    }
}

impl placement_ranking::Host for State {
    fn rank_hosts(&mut self, request: PlacementRequest) -> wasmtime::Result<Vec<String>> {
        now_ranking::Host::rank_hosts(self, request)
    }
}

impl log::Host for State {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => now_log::Level::Trace,
            log::Level::Debug => now_log::Level::Debug,
            log::Level::Info => now_log::Level::Info,
            log::Level::Warn => now_log::Level::Warn,
            log::Level::Error => now_log::Level::Error,
        };
        now_log::Host::log(self, level, message)
    }
}
