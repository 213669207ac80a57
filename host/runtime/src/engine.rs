//! The one wasmtime engine of a process, with every default in one place and the reason beside it.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use wasmtime::{
    Cache, CacheConfig, Config, Enabled, Engine, InstanceAllocationStrategy,
    PoolingAllocationConfig,
};

/// How often the epoch advances. Deadlines are counted in ticks, so this is their resolution;
/// a millisecond costs one wake-up of one thread per millisecond and nothing on the call path.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Default per-call deadline. Plugin calls take microseconds; tens of milliseconds is far beyond
/// any honest call and short enough that a looping plugin cannot stall a reconcile pass.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(50);

/// Default per-call memory cap. Scalers copy only the part of the lattice they query, so a
/// few MiB is typical; 64 MiB leaves room for large lattices and stops a runaway allocation.
pub const DEFAULT_MEMORY: usize = 64 << 20;

/// The largest memory cap a plugin may be configured with; the pool reserves address space
/// (not RAM) for it.
pub const MAX_MEMORY: usize = 1 << 30;

/// How many plugin instances may be alive at once across all calls. Each call instantiates
/// afresh, and a scaler call may nest placement calls, so this bounds concurrent calls.
const POOL_INSTANCES: u32 = 256;

/// Bytes of each memory and table slot kept resident between calls (see `new_engine`).
const KEEP_RESIDENT: usize = 1 << 20;

/// Builds the engine and starts its epoch ticker. With `cache_dir`, compiled plugins are kept
/// there and a plugin seen before (by any process of the same trellis build) loads without
/// compiling: a Rust plugin compiles in well under a second, but a JavaScript or Python one
/// carries its interpreter, tens of MB of wasm, and takes seconds to tens of seconds
/// (docs/decisions/0015-plugin-compile-cache.md).
pub fn new_engine(cache_dir: Option<&Path>) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    if let Some(dir) = cache_dir {
        config.cache(Some(compile_cache(dir)?));
    }
    // Epoch interruption is the cheap way to bound a call's time: a load and compare at
    // loop heads, versus fuel's counter updates on every block.
    config.epoch_interruption(true);
    // A fresh instance per call is only affordable with the pooling allocator (slots are
    // reused, nothing is mmap'd per call) and copy-on-write memory images (a data segment
    // costs a page mapping, not a copy).
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * 4)
        .total_memories(POOL_INSTANCES * 2)
        .total_tables(POOL_INSTANCES * 4)
        .max_memory_size(MAX_MEMORY)
        // Rust components have one core module per adapter shim plus the main one.
        .max_core_instances_per_component(16)
        .max_memories_per_component(4)
        .max_tables_per_component(8)
        // A plugin call touches a few hundred KiB (stack, heap, data). Resetting that with a
        // memset on release is several times cheaper than madvise plus a page fault per page
        // on the next call (measured: the fixed cost of a call fell from 34 µs; see
        // docs/decisions/0002-plugin-call-cost.md).
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        // Where the kernel can say which pages a call wrote (Linux 6.7+), reset only those:
        // pages no call ever touched (most of the guest stack, the unused heap) stay untouched.
        // About 1 µs of a call's ~7 µs teardown (docs/decisions/0007-plugin-call-guest-code.md);
        // elsewhere the memset above applies.
        .pagemap_scan(Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config.memory_init_cow(true);
    // Plugin output is small and calls are short: we never need async support in the guest.
    config.wasm_component_model(true);
    // TRELLIS_PERFMAP=1 writes /tmp/perf-PID.map, so `perf report` names guest functions.
    if std::env::var_os("TRELLIS_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    let engine = Engine::new(&config)?;
    start_ticker(engine.weak());
    Ok(engine)
}

/// The compile cache in `dir`, a folder only this user may read or write: what is in it is
/// loaded as machine code without compiling, so nobody else may put anything there.
fn compile_cache(dir: &Path) -> anyhow::Result<Cache> {
    let dir = std::path::absolute(dir)
        .with_context(|| format!("the plugin compile cache {}", dir.display()))?;
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the plugin compile cache {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).with_context(
            || {
                format!(
                    "cannot make the plugin compile cache {} private",
                    dir.display()
                )
            },
        )?;
    }
    let mut config = CacheConfig::new();
    config.with_directory(&dir);
    Cache::new(config).map_err(|e| {
        anyhow::anyhow!(
            "cannot use the plugin compile cache {}: {e:#}",
            dir.display()
        )
    })
}

/// Advances the epoch until the engine is dropped.
fn start_ticker(engine: wasmtime::EngineWeak) {
    std::thread::Builder::new()
        .name("trellis-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match engine.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        })
        .expect("spawn the epoch ticker thread");
}

/// Deadline in epoch ticks, at least one.
pub fn deadline_ticks(deadline: Duration) -> u64 {
    (deadline.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64
}
