//! The sandbox one plugin call runs in: a fresh store whose only imports are the lattice view,
//! placement ranking and logging. Plugins built with the SDK import nothing else (it answers
//! its libc's WASI calls inside the plugin, see `sdk/src/wasi.rs`). For plugins built without
//! it, WASI is linked but grants nothing: no files, no sockets, no environment, a clock stuck
//! at zero and a fixed random stream, so a plugin's decision depends on its input alone.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::error::Fault;
use crate::placement::Placements;
use crate::snapshot::LatticeSnapshot;

/// How much of a plugin's stderr (panic messages) is kept to explain a trap.
const STDERR_CAPACITY: usize = 16 << 10;

/// How many of a call's last error lines are kept to explain a trap: a Rust panic message is
/// three lines (where, what, the backtrace hint).
pub(crate) const ERROR_LINES: usize = 3;

/// Per-call limits of a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub deadline: Duration,
    pub memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: crate::engine::DEFAULT_DEADLINE,
            memory: crate::engine::DEFAULT_MEMORY,
        }
    }
}

/// Caps linear memory and remembers that the cap was hit, to tell a memory fault from a trap.
pub(crate) struct MemoryCap {
    limit: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The data of one call's store.
pub(crate) struct State {
    pub plugin: Arc<str>,
    pub(crate) table: ResourceTable,
    /// Built on the first WASI call only: a plugin that does not panic never makes one, and
    /// building a context costs several microseconds per call (measured in decision 0006).
    wasi: Option<WasiCtx>,
    stderr: MemoryOutputPipe,
    /// The last error lines the plugin logged in this call. An SDK plugin's stderr (where a
    /// panic message goes) arrives as error lines through `log`, not through WASI.
    pub(crate) errors: VecDeque<String>,
    memory: MemoryCap,
    /// What `rank-hosts` consults; empty for placement and validator calls.
    pub(crate) placements: Placements,
    pub(crate) snapshot: Option<Arc<LatticeSnapshot>>,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let stderr = &self.stderr;
        WasiCtxView {
            ctx: self.wasi.get_or_insert_with(|| granting_nothing(stderr)),
            table: &mut self.table,
        }
    }
}

/// A WASI context that grants nothing: no files, sockets, environment or real clocks and
/// randomness; stderr goes to a pipe so that a panic message can explain a trap.
fn granting_nothing(stderr: &MemoryOutputPipe) -> WasiCtx {
    WasiCtx::builder()
        .stderr(stderr.clone())
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .secure_random(wasmtime_wasi::Deterministic::new(vec![0x5a]))
        .insecure_random(wasmtime_wasi::Deterministic::new(vec![0xa5]))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A store for one call, with its limits armed.
pub(crate) fn new_store(
    engine: &Engine,
    plugin: Arc<str>,
    limits: Limits,
    placements: Placements,
    snapshot: Option<Arc<LatticeSnapshot>>,
) -> Store<State> {
    let state = State {
        plugin,
        table: ResourceTable::new(),
        wasi: None,
        stderr: MemoryOutputPipe::new(STDERR_CAPACITY),
        errors: VecDeque::new(),
        memory: MemoryCap {
            limit: limits.memory,
            hit: false,
        },
        placements,
        snapshot,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.memory);
    store.set_epoch_deadline(crate::engine::deadline_ticks(limits.deadline));
    store.epoch_deadline_trap();
    store
}

/// Puts the snapshot into the store's table as the `lattice-view` the plugin receives.
pub(crate) fn lattice_resource(
    store: &mut Store<State>,
    snapshot: &Arc<LatticeSnapshot>,
) -> Result<Resource<Arc<LatticeSnapshot>>, Fault> {
    store
        .data_mut()
        .table
        .push(Arc::clone(snapshot))
        .map_err(|e| Fault::Instantiate(e.to_string()))
}

/// Turns a wasmtime error into the fault an operator should read.
pub(crate) fn classify(err: wasmtime::Error, store: &Store<State>, limits: Limits) -> Fault {
    let state = store.data();
    if state.memory.hit {
        return Fault::MemoryLimit(limits.memory);
    }
    if let Some(wasmtime::Trap::Interrupt) = err.downcast_ref::<wasmtime::Trap>() {
        return Fault::Timeout(limits.deadline);
    }
    let stderr = String::from_utf8_lossy(&state.stderr.contents()).to_string();
    let trap = match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{err:#}"),
    };
    // A Rust panic prints its message on stderr before the `unreachable` trap: through WASI,
    // or as error lines through `log` for a plugin built with the SDK.
    let lines: Vec<&str> = stderr
        .lines()
        .chain(state.errors.iter().map(String::as_str))
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    if lines.is_empty() {
        Fault::Trap(trap)
    } else {
        let said = lines[lines.len().saturating_sub(ERROR_LINES)..].join(" | ");
        Fault::Trap(format!("{trap} ({said})"))
    }
}

/// The linker of each world: the world's imports, in both contract versions, plus a WASI that
/// grants nothing.
pub(crate) fn scaler_linker(engine: &Engine) -> anyhow::Result<Linker<State>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    crate::bindings::scaler::Scaler::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;
    crate::compat::add_to_linker(&mut linker)?;
    Ok(linker)
}

pub(crate) fn placement_linker(engine: &Engine) -> anyhow::Result<Linker<State>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    crate::bindings::placement::Placement::add_to_linker::<State, HasSelf<State>>(
        &mut linker,
        |s| s,
    )?;
    crate::compat::add_to_linker(&mut linker)?;
    Ok(linker)
}

pub(crate) fn rollout_linker(engine: &Engine) -> anyhow::Result<Linker<State>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    crate::bindings::rollout::Rollout::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;
    Ok(linker)
}

pub(crate) fn validator_linker(engine: &Engine) -> anyhow::Result<Linker<State>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    crate::bindings::validator::Validator::add_to_linker::<State, HasSelf<State>>(
        &mut linker,
        |s| s,
    )?;
    crate::compat::add_to_linker(&mut linker)?;
    Ok(linker)
}
