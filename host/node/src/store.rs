//! The lattice's shared data in JetStream KV: links (`LATTICEDATA_{lattice}`, by `Link::key()`)
//! and named configs (`CONFIGDATA_{lattice}`, a JSON object of strings per name).
//!
//! Writes come from whichever node the queue group hands a request to; every node watches both
//! buckets and so learns every change, whoever made it.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use async_nats::jetstream::{self, kv};
use futures::StreamExt as _;
use tracing::{debug, warn};
use trellis_bus::resume::{self, Resumed};
use trellis_lattice::ctl::{self, Link};

use crate::host::Host;

pub(crate) type ConfigValues = BTreeMap<String, String>;

pub(crate) struct LatticeStores {
    links: kv::Store,
    configs: kv::Store,
}

impl LatticeStores {
    /// Opens the lattice's buckets, creating them if missing (several nodes may race to).
    pub(crate) async fn open(client: &async_nats::Client, lattice: &str) -> anyhow::Result<Self> {
        let js = jetstream::new(client.clone());
        Ok(Self {
            links: trellis_bus::open_bucket(&js, &ctl::link_bucket(lattice), 1).await?,
            configs: trellis_bus::open_bucket(&js, &ctl::config_bucket(lattice), 1).await?,
        })
    }

    pub(crate) async fn put_link(&self, link: &Link) -> anyhow::Result<()> {
        let value = serde_json::to_vec(link)?;
        self.links
            .put(link.key(), value.into())
            .await
            .with_context(|| format!("cannot store link {}", link.key()))?;
        Ok(())
    }

    /// Deletes a link; false if there was none under `key`.
    pub(crate) async fn delete_link(&self, key: &str) -> anyhow::Result<bool> {
        let existed = self
            .links
            .get(key)
            .await
            .with_context(|| format!("cannot read link {key}"))?
            .is_some();
        if existed {
            self.links
                .delete(key)
                .await
                .with_context(|| format!("cannot delete link {key}"))?;
        }
        Ok(existed)
    }

    /// Every link in the bucket, read now (not from the watch, which may lag a write).
    pub(crate) async fn links(&self) -> anyhow::Result<Vec<Link>> {
        let mut keys = self.links.keys().await.context("cannot list links")?;
        let mut links = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.context("cannot list links")?;
            let Some(value) = self
                .links
                .get(&key)
                .await
                .with_context(|| format!("cannot read link {key}"))?
            else {
                continue;
            };
            match serde_json::from_slice(&value) {
                Ok(link) => links.push(link),
                Err(e) => warn!(key, error = %e, "skipping a link that is not valid JSON"),
            }
        }
        Ok(links)
    }

    pub(crate) async fn put_config(&self, name: &str, values: &ConfigValues) -> anyhow::Result<()> {
        let value = serde_json::to_vec(values)?;
        self.configs
            .put(name, value.into())
            .await
            .with_context(|| format!("cannot store config {name}"))?;
        Ok(())
    }

    pub(crate) async fn config(&self, name: &str) -> anyhow::Result<Option<ConfigValues>> {
        let Some(value) = self
            .configs
            .get(name)
            .await
            .with_context(|| format!("cannot read config {name}"))?
        else {
            return Ok(None);
        };
        let values = serde_json::from_slice(&value)
            .with_context(|| format!("config {name} is not a JSON object of strings"))?;
        Ok(Some(values))
    }

    pub(crate) async fn delete_config(&self, name: &str) -> anyhow::Result<()> {
        self.configs
            .delete(name)
            .await
            .with_context(|| format!("cannot delete config {name}"))?;
        Ok(())
    }

    /// The named configs merged in order (later names win); missing ones count as empty.
    pub(crate) async fn merged_config(&self, names: &[String]) -> anyhow::Result<ConfigValues> {
        let mut merged = ConfigValues::new();
        for name in names {
            match self.config(name).await? {
                Some(values) => merged.extend(values),
                None => debug!(config = %name, "config not found; treated as empty"),
            }
        }
        Ok(merged)
    }
}

/// Keeps the host's view of the lattice's links current, and its HTTP routes with it. The
/// watch reopens itself after a nats-server restart, resuming after the last revision seen
/// ([`trellis_bus::resume`]), and never ends.
pub(crate) async fn watch_links(host: Arc<Host>) {
    let mut entries = resume::kv_watch(&host.client, host.stores.links.clone(), None, true);
    while let Some(input) = entries.next().await {
        // Each entry holds a whole link: a resumed watch leaves nothing stale.
        if let Resumed::Item(entry) = input {
            apply_link_entry(&host, entry).await;
        }
    }
}

async fn apply_link_entry(host: &Host, entry: kv::Entry) {
    match entry.operation {
        kv::Operation::Put => match serde_json::from_slice::<Link>(&entry.value) {
            Ok(link) => host.set_link(&entry.key, Some(link)).await,
            Err(e) => {
                warn!(host_id = %host.id, key = %entry.key, error = %e, "ignoring a link that is not valid JSON")
            }
        },
        kv::Operation::Delete | kv::Operation::Purge => host.set_link(&entry.key, None).await,
    }
}

/// Re-checks HTTP routes (a link's `address` may live in a config) and the components' runtime
/// config and buckets whenever a config changes, and after the watch was reopened (a
/// nats-server restart): a change made before the reopen may not have been seen.
pub(crate) async fn watch_configs(host: Arc<Host>) {
    // Without history: routes read configs when they are computed, so only changes matter.
    let mut changes = resume::kv_watch(&host.client, host.stores.configs.clone(), None, false);
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
