//! The built-in capability providers, and the HTTP listeners their links ask for.
//!
//! A node runs two providers in-process: the HTTP server ([`crate::http_server`]), one
//! listener per `wasi:http` `incoming-handler` link from it, and key-value, which needs no
//! process (every node gives components `wasi:keyvalue`; the provider exists so that manifests
//! can link to it, with the bucket in the link's target config).

use std::collections::BTreeMap;

use tracing::{info, warn};
use trellis_lattice::ctl::{Link, StartProviderCommand};
use trellis_lattice::event;

use super::{read, write, Host};
use crate::http_server::{ListenerChange, Route, DEFAULT_WEIGHT};

/// The image reference of the built-in HTTP server provider.
const HTTP_SERVER_REF: &str = "builtin:http-server";
/// The image reference of the built-in key-value provider.
const KEYVALUE_REF: &str = "builtin:keyvalue";
/// Where the HTTP server listens when neither the provider's nor the link's config says
/// `address` (wasmCloud's HTTP server provider default).
const DEFAULT_HTTP_ADDRESS: &str = "0.0.0.0:8000";
/// Event published when an HTTP listener cannot bind (wasmCloud's provider health event).
const HEALTH_CHECK_FAILED: &str = "health_check_failed";
const HEALTH_CHECK_PASSED: &str = "health_check_passed";

/// wasmCloud's reference to its hosts' built-in HTTP server.
const WASMCLOUD_BUILTIN_HTTP_SERVER: &str = "wasmcloud+builtin://http-server";

/// Whether `image_ref` names the built-in HTTP server. wasmCloud's own image refs (its host's
/// built-in `wasmcloud+builtin://http-server`, its provider `ghcr.io/wasmcloud/http-server:0.2x`)
/// are aliases so that wadm manifests run unchanged.
fn is_http_server(image_ref: &str) -> bool {
    image_ref == HTTP_SERVER_REF
        || image_ref == WASMCLOUD_BUILTIN_HTTP_SERVER
        || image_ref.contains("wasmcloud/http-server")
}

/// Whether `image_ref` names the built-in key-value provider; wasmCloud's NATS key-value
/// provider is an alias, as it keeps its data in the same place.
pub(super) fn is_keyvalue(image_ref: &str) -> bool {
    image_ref == KEYVALUE_REF || image_ref.contains("wasmcloud/keyvalue-nats")
}

/// A built-in capability provider running on this node.
#[derive(Debug, Clone)]
pub(super) struct RunningProvider {
    pub(super) id: String,
    pub(super) image_ref: String,
    pub(super) annotations: BTreeMap<String, String>,
    /// Named configs whose values apply to every link of this provider (e.g. `address`).
    config: Vec<String>,
}

impl Host {
    /// Starts a provider; the error says why not (and has been published as
    /// `provider_start_failed`). On success, returns what went wrong with its listeners, if
    /// anything (an address in use: the provider runs and retries, and the reply says so).
    pub(super) async fn start_provider(
        &self,
        cmd: StartProviderCommand,
    ) -> Result<Vec<String>, String> {
        if !is_http_server(&cmd.provider_ref) && !is_keyvalue(&cmd.provider_ref) {
            let error = format!(
                "unknown provider image {:?}: this node runs only its built-in providers: the HTTP server ({HTTP_SERVER_REF}, {WASMCLOUD_BUILTIN_HTTP_SERVER}, or any image ref containing wasmcloud/http-server) and key-value ({KEYVALUE_REF}, or wasmcloud/keyvalue-nats)",
                cmd.provider_ref
            );
            warn!(host_id = %self.id, provider_id = %cmd.provider_id, %error, "provider not started");
            let data = event::ProviderStartFailed {
                host_id: self.id.clone(),
                provider_ref: cmd.provider_ref.clone(),
                provider_id: cmd.provider_id.clone(),
                error: error.clone(),
            };
            self.publish_event(event::PROVIDER_START_FAILED, data).await;
            return Err(error);
        }
        let provider = RunningProvider {
            id: cmd.provider_id.clone(),
            image_ref: cmd.provider_ref.clone(),
            annotations: cmd.annotations.clone().unwrap_or_default(),
            config: cmd.config.clone(),
        };
        // The provider's own links, read now: one put a moment ago may not have come through
        // the watch yet, and the reply says what its listeners could not do.
        match self.data.links_from(&provider.id).await {
            Ok(links) => {
                write(&self.links).replace_source(&provider.id, links);
            }
            Err(error) => {
                warn!(host_id = %self.id, provider_id = %provider.id, error = %format!("{error:#}"), "cannot read the provider's links; the watch will bring them")
            }
        }
        write(&self.providers).insert(provider.id.clone(), provider.clone());
        info!(host_id = %self.id, provider_id = %provider.id, image_ref = %provider.image_ref, "provider started");
        let data = event::ProviderStarted {
            annotations: provider.annotations,
            host_id: self.id.clone(),
            image_ref: provider.image_ref,
            provider_id: provider.id,
        };
        self.publish_event(event::PROVIDER_STARTED, data).await;
        self.changed();
        let failures = self.reconcile_routes().await;
        Ok(failures
            .into_iter()
            .filter(|(provider_id, _)| *provider_id == cmd.provider_id)
            .map(|(_, error)| error)
            .collect())
    }

    /// Stops a provider; false if it was not running here.
    pub(super) async fn stop_provider(&self, provider_id: &str) -> bool {
        let Some(provider) = write(&self.providers).remove(provider_id) else {
            return false;
        };
        info!(host_id = %self.id, provider_id, "provider stopped");
        self.reconcile_routes().await;
        let data = event::ProviderStopped {
            annotations: provider.annotations,
            host_id: self.id.clone(),
            provider_id: provider.id,
            reason: "stop requested".into(),
        };
        self.publish_event(event::PROVIDER_STOPPED, data).await;
        self.changed();
        true
    }

    /// Opens, moves and closes HTTP listeners so that each HTTP link of a provider running here
    /// has one. Returns the listeners that newly failed, as (provider id, reason); each has
    /// also been published as `health_check_failed`.
    pub(super) async fn reconcile_routes(&self) -> Vec<(String, String)> {
        let _serialised = self.routes_lock.lock().await;
        let providers = read(&self.providers).clone();
        let links: Vec<Link> = {
            let table = read(&self.links);
            providers
                .keys()
                .flat_map(|provider_id| table.from_source(provider_id))
                .filter(|link| {
                    link.wit_namespace == "wasi"
                        && link.wit_package == "http"
                        && link.interfaces.iter().any(|i| i == "incoming-handler")
                })
                .cloned()
                .collect()
        };
        let mut routes = Vec::with_capacity(links.len());
        for link in links {
            let provider = &providers[&link.source_id];
            let names: Vec<String> = provider
                .config
                .iter()
                .chain(&link.source_config)
                .cloned()
                .collect();
            let values = match self.data.merged_config(&names).await {
                Ok(values) => values,
                Err(e) => {
                    // Better to keep the listeners as they are than to move one to a default.
                    warn!(host_id = %self.id, link = %link.key(), error = %format!("{e:#}"), "cannot read link config; HTTP routes left as they are");
                    return Vec::new();
                }
            };
            let address = values
                .get("address")
                .or_else(|| values.get("ADDRESS"))
                .cloned()
                .unwrap_or_else(|| DEFAULT_HTTP_ADDRESS.to_string());
            let weight = match values.get("weight").map(|w| w.trim().parse::<u32>()) {
                None => DEFAULT_WEIGHT,
                Some(Ok(weight)) => weight,
                Some(Err(_)) => {
                    warn!(host_id = %self.id, link = %link.key(), weight = %values["weight"], "the link's weight is not a whole number; taking the default");
                    DEFAULT_WEIGHT
                }
            };
            routes.push(Route {
                link_key: link.key(),
                provider_id: link.source_id.clone(),
                address,
                target: link.target.clone(),
                weight,
            });
        }
        let mut failures = Vec::new();
        for change in self.http.apply(routes).await {
            match change {
                ListenerChange::Failed { route, error } => {
                    failures.push((route.provider_id.clone(), error.clone()));
                    let data = serde_json::json!({
                        "host_id": self.id,
                        "provider_id": route.provider_id,
                        "link": route.link_key,
                        "address": route.address,
                        "error": error,
                    });
                    self.publish_event(HEALTH_CHECK_FAILED, data).await;
                }
                ListenerChange::Recovered { route } => {
                    let data = serde_json::json!({
                        "host_id": self.id,
                        "provider_id": route.provider_id,
                        "link": route.link_key,
                        "address": route.address,
                    });
                    self.publish_event(HEALTH_CHECK_PASSED, data).await;
                }
            }
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasmcloud_http_server_images_are_aliases() {
        assert!(is_http_server(HTTP_SERVER_REF));
        assert!(is_http_server("ghcr.io/wasmcloud/http-server:0.23.0"));
        assert!(!is_http_server("ghcr.io/wasmcloud/keyvalue-redis:0.28.1"));
    }
}
