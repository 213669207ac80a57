//! The lattice's links and configs, as they change, and what they give the components
//! running here: each one's runtime config, grants and identity ([`crate::environment`]),
//! recomputed whenever a link, a config or a label changes. Both buckets are watched for as
//! long as the node runs; the watches reopen themselves after a nats-server restart
//! ([`trellis_bus::resume`]) and never end.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_nats::jetstream::kv;
use futures::StreamExt as _;
use tracing::{debug, warn};
use trellis_bus::resume::Resumed;
use trellis_lattice::ctl::Link;

use super::{read, write, Host};
use crate::environment::ComponentEnv;
use crate::grants::{self, Grants};

/// The link config key naming a component's key-value bucket (as wasmCloud's NATS provider).
const BUCKET_KEY: &str = "bucket";

impl Host {
    /// Records an entry of the link bucket (all links of one source).
    async fn apply_link_entry(&self, entry: &kv::Entry) {
        if !write(&self.links).apply(entry) {
            return;
        }
        self.reconcile_routes().await;
        self.refresh_envs().await;
    }

    /// What a component sees of the lattice: its runtime config, its grants, its identity.
    pub(super) async fn component_env(
        &self,
        component_id: &str,
        annotations: &BTreeMap<String, String>,
        config_names: &[String],
    ) -> Result<ComponentEnv, String> {
        let named = self
            .data
            .merged_config(config_names)
            .await
            .map_err(|e| format!("cannot read the runtime config of {component_id}: {e:#}"))?;
        let app = annotations.get(trellis_lattice::annotations::APP).cloned();
        let grants = self.grants_of(component_id, app.as_deref()).await?;
        ComponentEnv::new(
            component_id,
            app,
            named,
            (&self.id, &self.labels()),
            grants,
            self.limits.request_timeout,
        )
        .map_err(|e| format!("the runtime config of {component_id}: {e}"))
    }

    /// What a component's links grant it: the buckets its `wasi:keyvalue` links name in their
    /// target config (`bucket`) and the components its `wasi:http` `outgoing-handler` links
    /// point at ([`crate::grants`]).
    async fn grants_of(&self, component_id: &str, app: Option<&str>) -> Result<Grants, String> {
        let links: Vec<Link> = read(&self.links)
            .from_source(component_id)
            .filter(|link| link.wit_namespace == "wasi")
            .cloned()
            .collect();
        let mut grants = Grants {
            app_bucket: grants::app_bucket(&self.lattice, app),
            ..Grants::default()
        };
        for link in links {
            match link.wit_package.as_str() {
                "keyvalue" => {
                    let values =
                        self.data
                            .merged_config(&link.target_config)
                            .await
                            .map_err(|e| {
                                format!("cannot read the config of link {}: {e:#}", link.key())
                            })?;
                    match values.get(BUCKET_KEY) {
                        None => {}
                        Some(bucket) if grants::valid_bucket_name(bucket) => {
                            grants.linked_buckets.push(bucket.clone())
                        }
                        Some(bucket) => return Err(format!(
                            "link {} names key-value bucket {bucket:?}, which JetStream does not accept: use letters, digits, - and _",
                            link.key()
                        )),
                    }
                }
                "http" if link.interfaces.iter().any(|i| i == "outgoing-handler") => {
                    grants.callees.insert(link.target.clone());
                }
                _ => {}
            }
        }
        Ok(grants)
    }

    /// Recomputes every running component's environment after a config, link or label change.
    pub(super) async fn refresh_envs(&self) {
        for component in self.components.all() {
            match self
                .component_env(
                    &component.id,
                    &component.annotations,
                    &component.config_names,
                )
                .await
            {
                Ok(env) => component.set_env(env),
                Err(error) => {
                    warn!(host_id = %self.id, component_id = %component.id, %error, "keeping the component's previous config")
                }
            }
        }
    }
}

/// Keeps the host's view of the lattice's links current, and its HTTP routes with it.
pub(crate) async fn watch_links(host: Arc<Host>) {
    let mut entries = host.data.watch_links(&host.client);
    while let Some(input) = entries.next().await {
        // Each entry holds all links of its source: a resumed watch leaves nothing stale.
        if let Resumed::Item(entry) = input {
            host.apply_link_entry(&entry).await;
        }
    }
}

/// Re-checks HTTP routes (a link's `address` may live in a config) and the components' runtime
/// config and buckets whenever a config changes, and after the watch was reopened (a
/// nats-server restart): a change made before the reopen may not have been seen.
pub(crate) async fn watch_configs(host: Arc<Host>) {
    // Without history: routes read configs when they are computed, so only changes matter.
    let mut changes = host.data.watch_configs(&host.client);
    while let Some(input) = changes.next().await {
        match input {
            Resumed::Item(entry) => {
                debug!(host_id = %host.id, config = %entry.key, "config changed");
            }
            Resumed::Reopened => {
                debug!(host_id = %host.id, "config watch reopened; re-reading configs");
            }
        }
        host.reconcile_routes().await;
        host.refresh_envs().await;
    }
}
