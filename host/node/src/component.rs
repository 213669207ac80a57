//! Application components: the wasmtime engine, loading images, and serving one HTTP request.
//!
//! One [`Engine`] per node. A component is compiled once when it is scaled up and kept as an
//! `InstancePre`; every request gets a fresh `Store` and instance, so nothing leaks between
//! requests. The scale count is the number of requests a component may serve at once on this
//! node.
//!
//! Besides WASI 0.2 (`wasi:cli`, `wasi:http` in and out) a component may import what the world
//! `trellis:node/capabilities` (`host/node/wit`) lists: `wasi:keyvalue` ([`crate::keyvalue`]),
//! `wasi:config` and `wasi:logging` ([`crate::environment`]). Outgoing HTTP to a lattice name
//! becomes a call to that component on any node ([`crate::calls`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Body;
use tokio::sync::Semaphore;
use tracing::{warn, Instrument as _};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use crate::calls::{self, LatticeCalls};
use crate::environment::ComponentEnv;
use crate::keyvalue::KeyValue;

/// How often the epoch advances. A guest that computes without calling the host yields to the
/// async executor once per tick, so one busy component cannot starve the node's other tasks.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Linear memory one instance may grow to. Generous for HTTP handlers; stops a runaway guest
/// from taking the node down with it.
const MAX_INSTANCE_MEMORY: usize = 256 << 20;

/// Why an image could not become a runnable component.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImageError {
    #[error("unsupported image reference {0:?}: use a file (file:///abs/path.wasm or a path) or an OCI image (registry.example.com/repository:tag, or oci://…)")]
    Unsupported(String),
    #[error("invalid OCI image reference {reference:?}: {reason}")]
    BadReference { reference: String, reason: String },
    #[error("cannot pull {reference}: {reason}")]
    Pull { reference: String, reason: String },
    #[error("component file {} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("cannot read component file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a valid WebAssembly component: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot instantiate {}: {reason}", path.display())]
    Link { path: PathBuf, reason: String },
}

/// The per-node wasmtime engine and the host functions every component gets.
pub(crate) struct ComponentRuntime {
    engine: Engine,
    linker: Linker<RequestState>,
}

impl ComponentRuntime {
    pub(crate) fn new() -> anyhow::Result<Self> {
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
        Ok(Self { engine, linker })
    }

    /// Reads (pulling it first for an OCI image) and compiles the component behind
    /// `image_ref` (slow: compiling runs on a blocking thread).
    pub(crate) async fn load(&self, image_ref: &str) -> Result<LoadedComponent, ImageError> {
        let path = match crate::oci::reference(image_ref) {
            None => image_path(image_ref)?,
            Some(Err(reason)) => {
                return Err(ImageError::BadReference {
                    reference: image_ref.into(),
                    reason,
                })
            }
            Some(Ok(reference)) => {
                let (path, digest) =
                    crate::oci::fetch(&reference)
                        .await
                        .map_err(|reason| ImageError::Pull {
                            reference: image_ref.into(),
                            reason,
                        })?;
                tracing::debug!(image_ref, %digest, path = %path.display(), "component image ready");
                path
            }
        };
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ImageError::Missing(path))
            }
            Err(source) => return Err(ImageError::Read { path, source }),
        };
        let engine = self.engine.clone();
        let linker = self.linker.clone();
        tokio::task::spawn_blocking(move || compile(&engine, &linker, &path, &bytes))
            .await
            .map_err(|e| ImageError::Invalid {
                path: image_ref.into(),
                reason: format!("compilation panicked: {e}"),
            })?
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

fn compile(
    engine: &Engine,
    linker: &Linker<RequestState>,
    path: &Path,
    bytes: &[u8],
) -> Result<LoadedComponent, ImageError> {
    // A core module (version 1) is the most common mistake: say so, and how to fix it.
    if bytes.starts_with(b"\0asm\x01\0\0\0") {
        return Err(ImageError::Invalid {
            path: path.into(),
            reason: "it is a core WebAssembly module, not a component: build it for wasm32-wasip2 (or wrap it with `wasm-tools component new`)".into(),
        });
    }
    let component = Component::from_binary(engine, bytes).map_err(|e| ImageError::Invalid {
        path: path.into(),
        reason: format!("{e:#}"),
    })?;
    let instance_pre = match linker.instantiate_pre(&component) {
        Ok(pre) => pre,
        Err(e) => {
            // Imports this node does not provide (messaging, blob stores, …) trap when called,
            // so that the rest of the component still works.
            warn!(path = %path.display(), error = %format!("{e:#}"), "component imports interfaces this node does not provide; they will trap");
            let mut linker = linker.clone();
            linker
                .define_unknown_imports_as_traps(&component)
                .and_then(|()| linker.instantiate_pre(&component))
                .map_err(|e| ImageError::Link {
                    path: path.into(),
                    reason: format!("{e:#}"),
                })?
        }
    };
    let proxy = ProxyPre::new(instance_pre.clone()).ok();
    Ok(LoadedComponent {
        _instance_pre: instance_pre,
        proxy,
    })
}

/// The file an image reference points at: `file:///abs/path.wasm`, or a plain path (relative
/// ones against the node's working directory).
pub(crate) fn image_path(image_ref: &str) -> Result<PathBuf, ImageError> {
    let path = if let Some(rest) = image_ref.strip_prefix("file://") {
        PathBuf::from(rest)
    } else if image_ref.contains("://") || image_ref.is_empty() {
        return Err(ImageError::Unsupported(image_ref.into()));
    } else {
        PathBuf::from(image_ref)
    };
    if path.as_os_str().is_empty() {
        return Err(ImageError::Unsupported(image_ref.into()));
    }
    Ok(if path.is_absolute() {
        path
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(&path))
            .unwrap_or(path)
    })
}

/// A compiled component, ready to instantiate.
#[derive(Clone)]
pub(crate) struct LoadedComponent {
    /// Kept for components that are not HTTP handlers (nothing calls them yet).
    _instance_pre: InstancePre<RequestState>,
    /// Present when the component exports `wasi:http/incoming-handler`.
    proxy: Option<ProxyPre<RequestState>>,
}

/// What every component of a node shares: its connection to the lattice's data and peers.
pub(crate) struct Services {
    pub(crate) keyvalue: KeyValue,
    pub(crate) calls: LatticeCalls,
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
    services: Arc<Services>,
    /// One permit per instance that may run at once.
    permits: Arc<Semaphore>,
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
            services,
            permits: Arc::new(Semaphore::new(max_instances as usize)),
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

    /// Serves one HTTP request in a fresh instance, waiting for a free instance slot first.
    /// The request comes from the HTTP server provider or from another component over NATS.
    pub(crate) async fn serve_http<B>(
        &self,
        request: hyper::Request<B>,
    ) -> hyper::Response<HyperOutgoingBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let Some(proxy) = self.loaded.proxy.clone() else {
            return text_response(
                500,
                format!(
                    "component {} does not export wasi:http/incoming-handler",
                    self.id
                ),
            );
        };
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return text_response(503, format!("component {} is stopping", self.id));
        };

        let mut store = new_store(proxy.engine(), self.env(), self.services.clone());
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let prepared = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .and_then(|req| {
                let out = store.data_mut().http().new_response_outparam(sender)?;
                Ok((req, out))
            });
        let (req, out) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return text_response(400, format!("bad request: {e:#}")),
        };

        // The guest runs in its own task: it may keep streaming the body after it has handed
        // over the response head. The permit lives as long as the instance does.
        let span = tracing::debug_span!("http_request", component_id = %self.id);
        let guest = tokio::spawn(
            async move {
                let _permit = permit;
                let proxy = proxy.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            }
            .instrument(span),
        );

        match receiver.await {
            Ok(Ok(response)) => response,
            Ok(Err(code)) => {
                warn!(component_id = %self.id, error = ?code, "component answered with an error");
                text_response(500, format!("component {} failed: {code:?}", self.id))
            }
            Err(_) => {
                let error = match guest.await {
                    Ok(Ok(())) => "it never set a response".to_string(),
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(e) => format!("its task failed: {e}"),
                };
                warn!(component_id = %self.id, %error, "component failed to handle a request");
                text_response(
                    500,
                    format!(
                        "component {} failed to handle the request: {error}",
                        self.id
                    ),
                )
            }
        }
    }
}

/// A plain-text response with the body type wasmtime-wasi-http's responses have.
pub(crate) fn text_response(status: u16, body: String) -> hyper::Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed_unsync();
    hyper::Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(body)
        .expect("a static status and header are valid")
}

/// What a store holds while one instance serves one request.
pub(crate) struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    limits: StoreLimits,
    /// The component's environment when the request arrived.
    pub(crate) env: Arc<ComponentEnv>,
    pub(crate) services: Arc<Services>,
    hooks: OutgoingHttp,
}

fn new_store(
    engine: &Engine,
    env: Arc<ComponentEnv>,
    services: Arc<Services>,
) -> Store<RequestState> {
    let state = RequestState {
        wasi: WasiCtx::builder().inherit_stdout().inherit_stderr().build(),
        http: WasiHttpCtx::new(),
        table: ResourceTable::new(),
        limits: StoreLimitsBuilder::new()
            .memory_size(MAX_INSTANCE_MEMORY)
            .build(),
        hooks: OutgoingHttp {
            caller: env.clone(),
            services: services.clone(),
        },
        env,
        services,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limits);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
    store
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

/// Sends a component's outgoing HTTP requests: to a lattice component over NATS when the host
/// is a lattice name ([`calls::lattice_name`]), otherwise over TCP with wasmtime-wasi-http's
/// default sender.
struct OutgoingHttp {
    caller: Arc<ComponentEnv>,
    services: Arc<Services>,
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    hyper::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                ),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutgoingHttp {
    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> SendFuture {
        let Some(name) = calls::lattice_name(request.uri()).map(str::to_string) else {
            return Box::new(async move {
                let (response, io) =
                    wasmtime_wasi_http::default_send_request(request, options).await?;
                Ok((
                    response.map(http_body_util::BodyExt::boxed_unsync),
                    Box::new(io) as Box<dyn Future<Output = _> + Send>,
                ))
            });
        };
        let caller = self.caller.clone();
        let services = self.services.clone();
        Box::new(async move {
            let candidates = calls::candidate_ids(&name, caller.app.as_deref());
            let (parts, body) = request.into_parts();
            let body = body.collect().await?.to_bytes();
            let response = services
                .calls
                .call(&candidates, &caller.id, parts, body)
                .await;
            let done: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response.map(full_wasi_body), done))
        })
    }
}

fn full_wasi_body(bytes: Bytes) -> WasiBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs_resolve_to_files() {
        assert_eq!(
            image_path("file:///srv/app.wasm").unwrap(),
            PathBuf::from("/srv/app.wasm")
        );
        assert_eq!(
            image_path("/srv/app.wasm").unwrap(),
            PathBuf::from("/srv/app.wasm")
        );
        let relative = image_path("app.wasm").unwrap();
        assert!(relative.is_absolute() && relative.ends_with("app.wasm"));
        let relative = image_path("file://build/app.wasm").unwrap();
        assert!(relative.is_absolute() && relative.ends_with("build/app.wasm"));
        assert!(matches!(
            image_path("oci://ghcr.io/x:1"),
            Err(ImageError::Unsupported(_))
        ));
        assert!(matches!(image_path(""), Err(ImageError::Unsupported(_))));
    }
}
