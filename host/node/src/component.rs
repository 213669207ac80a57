//! The components running on a node.
//!
//! A component scaled up here is its compiled image ([`crate::engine`]), its count and its
//! environment ([`crate::environment`]). The scale count is the number of requests it may
//! serve at once on this node; each request runs in a fresh instance ([`crate::request`]), so
//! nothing leaks between requests.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::Semaphore;

use crate::engine::LoadedComponent;
use crate::environment::ComponentEnv;
use crate::guest::Services;
use crate::traffic::Traffic;

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
    /// Its requests over the last seconds, kept across a change of scale or config.
    pub(crate) traffic: Arc<Traffic>,
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
        traffic: Arc<Traffic>,
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
            traffic,
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
