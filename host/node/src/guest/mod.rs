//! What a guest gets: the state of the store one instance serves one request in, and the host
//! functions it may import besides its request. WASI 0.2 (`wasi:cli`, `wasi:http` in and out)
//! comes from wasmtime-wasi; the world `trellis:node/capabilities` (`host/node/wit`) adds
//! `wasi:keyvalue` ([`keyvalue`]), `wasi:config` ([`config`]) and `wasi:logging` ([`logging`]).
//! Outgoing HTTP goes where the component's app grants it ([`crate::outgoing`]).
//!
//! Every request gets a fresh store: nothing a guest does outlives its request, and each store
//! holds the node's bounds for one instance ([`crate::limits`]) and the request's deadline.

mod bindings;
mod config;
mod keyvalue;
mod logging;

use std::sync::Arc;

use tokio::time::Instant;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::calls::LatticeCalls;
use crate::environment::ComponentEnv;
use crate::limits::{InstanceLimiter, Limits};
use crate::outgoing::{OutgoingHttp, OwnListeners};
pub(crate) use keyvalue::KeyValue;

/// The trap message of an instance stopped at its deadline.
pub(crate) const DEADLINE_TRAP: &str = "the request's deadline passed";

/// What every component of a node shares: its connection to the lattice's data and peers, and
/// the node's bounds.
pub(crate) struct Services {
    pub(crate) keyvalue: KeyValue,
    pub(crate) calls: Arc<LatticeCalls>,
    pub(crate) limits: Limits,
    pub(crate) own_listeners: OwnListeners,
}

/// What a store holds while one instance serves one request.
pub(crate) struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limiter: InstanceLimiter,
    /// The component's environment when the request arrived.
    env: Arc<ComponentEnv>,
    services: Arc<Services>,
    hooks: OutgoingHttp,
}

impl RequestState {
    /// A fresh store for one request of the component whose environment is `env`, stopped
    /// at `deadline`.
    pub(crate) fn store(
        engine: &Engine,
        env: Arc<ComponentEnv>,
        services: Arc<Services>,
        deadline: Instant,
    ) -> Store<RequestState> {
        let mut table = ResourceTable::new();
        table.set_max_capacity(services.limits.instance_resources);
        let state = RequestState {
            wasi: WasiCtx::builder().inherit_stdout().inherit_stderr().build(),
            http: WasiHttpCtx::new(),
            table,
            limiter: InstanceLimiter::new(&services.limits),
            hooks: OutgoingHttp {
                caller: env.clone(),
                calls: services.calls.clone(),
                own_listeners: services.own_listeners.clone(),
                deadline,
            },
            env,
            services,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limiter);
        // Every tick a computing guest yields to the executor (so one busy component cannot
        // starve the node's other tasks) or, past its deadline, is interrupted.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Error::msg(DEADLINE_TRAP))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// The first of the node's bounds the instance ran into, as a sentence.
    pub(crate) fn limit_hit(&mut self) -> Option<String> {
        self.limiter.hit.take()
    }
}

/// Adds every host function a guest may import to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<RequestState>) -> anyhow::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    bindings::Capabilities::add_to_linker::<_, HasSelf<RequestState>>(linker, |state| state)?;
    Ok(())
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}
