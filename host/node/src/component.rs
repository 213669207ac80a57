//! Application components: the wasmtime engine, loading images, and the components running on
//! a node.
//!
//! One [`Engine`] per node. A component is compiled once when it is scaled up and kept as an
//! `InstancePre`; every request gets a fresh `Store` and instance ([`crate::request`]), so
//! nothing leaks between requests. The scale count is the number of requests a component may
//! serve at once on this node.
//!
//! Besides WASI 0.2 (`wasi:cli`, `wasi:http` in and out) a component may import what the world
//! `trellis:node/capabilities` (`host/node/wit`) lists: `wasi:keyvalue` ([`crate::keyvalue`]),
//! `wasi:config` and `wasi:logging` ([`crate::environment`]). Outgoing HTTP goes only where the
//! component's app grants it ([`crate::outgoing`]); to a lattice name it becomes a call to that
//! component on any node ([`crate::calls`]).

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;
use wasmtime::component::{HasSelf, InstancePre, Linker};
use wasmtime::{Config, Engine};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::calls::LatticeCalls;
use crate::environment::ComponentEnv;
use crate::image::{self, ImageError, ImageSource};
use crate::keyvalue::KeyValue;
use crate::limits::Limits;
use crate::outgoing::OwnListeners;
use crate::request::RequestState;
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
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        crate::bindings::Capabilities::add_to_linker::<_, HasSelf<RequestState>>(
            &mut linker,
            |state| state,
        )?;
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

/// What every component of a node shares: its connection to the lattice's data and peers.
pub(crate) struct Services {
    pub(crate) keyvalue: KeyValue,
    pub(crate) calls: LatticeCalls,
    pub(crate) limits: Limits,
    pub(crate) own_listeners: OwnListeners,
}

/// A component scaled up on this node.
pub(crate) struct RunningComponent {
    pub(crate) id: String,
    pub(crate) image_ref: String,
    pub(crate) annotations: BTreeMap<String, String>,
    pub(crate) max_instances: u32,
    /// The named configs of its runtime config, in merge order.
    pub(crate) config_names: Vec<String>,
    pub(crate) loaded: LoadedComponent,
    /// Config, bucket and identity as of the last change; each request takes a snapshot.
    env: RwLock<Arc<ComponentEnv>>,
    pub(crate) services: Arc<Services>,
    /// One permit per instance that may run at once.
    pub(crate) permits: Arc<Semaphore>,
    /// One permit per request in flight, running or waiting for an instance.
    pub(crate) requests: Arc<Semaphore>,
}

impl RunningComponent {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: String,
        image_ref: String,
        annotations: BTreeMap<String, String>,
        max_instances: u32,
        config_names: Vec<String>,
        loaded: LoadedComponent,
        env: ComponentEnv,
        services: Arc<Services>,
    ) -> Self {
        Self {
            id,
            image_ref,
            annotations,
            max_instances,
            config_names,
            loaded,
            env: RwLock::new(Arc::new(env)),
            permits: Arc::new(Semaphore::new(max_instances as usize)),
            requests: Arc::new(Semaphore::new(services.limits.max_concurrent_requests)),
            services,
        }
    }

    pub(crate) fn env(&self) -> Arc<ComponentEnv> {
        self.env
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_env(&self, env: ComponentEnv) {
        *self.env.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(env);
    }
}

/// A plain-text response with the body type wasmtime-wasi-http's responses have.
pub(crate) fn text_response(status: u16, body: String) -> hyper::Response<HyperOutgoingBody> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(crate::calls::full_body(Bytes::from(body)))
        .expect("a static status and header are valid")
}

/// The components running on this node, by component id; shared with the HTTP listeners.
#[derive(Clone, Default)]
pub(crate) struct Components(Arc<RwLock<BTreeMap<String, Arc<RunningComponent>>>>);

impl Components {
    pub(crate) fn get(&self, id: &str) -> Option<Arc<RunningComponent>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }
    pub(crate) fn insert(&self, component: Arc<RunningComponent>) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(component.id.clone(), component);
    }
    pub(crate) fn remove(&self, id: &str) -> Option<Arc<RunningComponent>> {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
    }
    pub(crate) fn clear(&self) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
    pub(crate) fn all(&self) -> Vec<Arc<RunningComponent>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}
