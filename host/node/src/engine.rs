//! The wasmtime engine of a node and the components it compiles.
//!
//! One [`Engine`] per node, with the host functions every component gets in one linker
//! ([`crate::guest`]). A component is compiled once when it is scaled up ([`crate::image`] reads
//! it) and kept as an `InstancePre`; every request instantiates it afresh
//! ([`crate::request`]).

use std::time::Duration;

use wasmtime::component::{InstancePre, Linker};
use wasmtime::{Config, Engine};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::guest::{self, RequestState};
use crate::image::{self, ImageError, ImageSource};
use crate::NodeConfig;

/// How often the epoch advances. A guest that computes without calling the host yields to the
/// async executor once per tick, so one busy component cannot starve the node's other tasks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The per-node wasmtime engine and the host functions every component gets.
pub(crate) struct ComponentRuntime {
    engine: Engine,
    linker: Linker<RequestState>,
    /// Where images may come from, and how much of them ([`crate::image`]).
    images: ImageSource,
}

impl ComponentRuntime {
    pub(crate) fn new(node: &NodeConfig) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        start_epoch_ticker(&engine);

        let mut linker = Linker::new(&engine);
        guest::add_to_linker(&mut linker)?;
        Ok(Self {
            engine,
            linker,
            images: ImageSource::new(node),
        })
    }

    /// Reads the image behind `image_ref` ([`crate::image`]: a file under an allowed folder,
    /// or pulled from a registry) and compiles it (slow: compiling runs on a blocking thread).
    pub(crate) async fn load(&self, image_ref: &str) -> Result<LoadedComponent, ImageError> {
        let image = self.images.read(image_ref).await?;
        let engine = self.engine.clone();
        let linker = self.linker.clone();
        let instance_pre =
            tokio::task::spawn_blocking(move || image::compile(&engine, &linker, &image))
                .await
                .map_err(|e| ImageError::Invalid {
                    path: image_ref.into(),
                    reason: format!("compilation panicked: {e}"),
                })??;
        Ok(LoadedComponent {
            proxy: ProxyPre::new(instance_pre.clone()).ok(),
            _instance_pre: instance_pre,
        })
    }
}

/// Advances the engine's epoch until the engine is gone.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("trellis-node-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("cannot spawn the epoch ticker thread");
}

/// A compiled component, ready to instantiate.
#[derive(Clone)]
pub(crate) struct LoadedComponent {
    /// Kept for components that are not HTTP handlers (nothing calls them yet).
    _instance_pre: InstancePre<RequestState>,
    /// Present when the component exports `wasi:http/incoming-handler`.
    pub(crate) proxy: Option<ProxyPre<RequestState>>,
}
