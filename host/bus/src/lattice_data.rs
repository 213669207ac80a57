//! The lattice's shared data in JetStream KV: links (`LATTICEDATA_{lattice}`, by `Link::key()`)
//! and named configs (`CONFIGDATA_{lattice}`, a JSON object of strings per name), the buckets
//! wasmCloud hosts use.
//!
//! Writes come from whichever host the control interface's queue group hands a request to
//! ([`crate::control`]); every node watches both buckets and so learns every change, whoever
//! made it. Trellis nodes and simulated hosts keep this data the same way, so they can share a
//! lattice.

use std::collections::BTreeMap;

use anyhow::Context as _;
use async_nats::jetstream::{self, kv};
use futures::stream::BoxStream;
use futures::StreamExt as _;
use tracing::{debug, warn};
use trellis_lattice::ctl::{self, Link};

use crate::resume::{self, Resumed};

/// One named config: its keys and values.
pub type ConfigValues = BTreeMap<String, String>;

/// The lattice's link and config buckets.
#[derive(Clone)]
pub struct LatticeData {
    links: kv::Store,
    configs: kv::Store,
}

impl LatticeData {
    /// Opens the lattice's buckets, creating them if missing (several hosts may race to).
    pub async fn open(client: &async_nats::Client, lattice: &str) -> anyhow::Result<Self> {
        let js = jetstream::new(client.clone());
        Ok(Self {
            links: crate::open_bucket(&js, &ctl::link_bucket(lattice), 1).await?,
            configs: crate::open_bucket(&js, &ctl::config_bucket(lattice), 1).await?,
        })
    }

    pub async fn put_link(&self, link: &Link) -> anyhow::Result<()> {
        let value = serde_json::to_vec(link)?;
        self.links
            .put(link.key(), value.into())
            .await
            .with_context(|| format!("cannot store link {}", link.key()))?;
        Ok(())
    }

    /// Deletes a link; false if there was none under `key`.
    pub async fn delete_link(&self, key: &str) -> anyhow::Result<bool> {
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

    /// Every link in the bucket, read now (not from a watch, which may lag a write).
    pub async fn links(&self) -> anyhow::Result<Vec<Link>> {
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

    pub async fn put_config(&self, name: &str, values: &ConfigValues) -> anyhow::Result<()> {
        let value = serde_json::to_vec(values)?;
        self.configs
            .put(name, value.into())
            .await
            .with_context(|| format!("cannot store config {name}"))?;
        Ok(())
    }

    pub async fn config(&self, name: &str) -> anyhow::Result<Option<ConfigValues>> {
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

    pub async fn delete_config(&self, name: &str) -> anyhow::Result<()> {
        self.configs
            .delete(name)
            .await
            .with_context(|| format!("cannot delete config {name}"))?;
        Ok(())
    }

    /// The named configs merged in order (later names win); missing ones count as empty.
    pub async fn merged_config(&self, names: &[String]) -> anyhow::Result<ConfigValues> {
        let mut merged = ConfigValues::new();
        for name in names {
            match self.config(name).await? {
                Some(values) => merged.extend(values),
                None => debug!(config = %name, "config not found; treated as empty"),
            }
        }
        Ok(merged)
    }

    /// Every link as it is now, then every change, for as long as the process lives: the watch
    /// reopens itself after a nats-server restart, resuming after the last revision seen
    /// ([`crate::resume`]). Each entry holds a whole link, so a resumed watch leaves nothing
    /// stale.
    pub fn watch_links(
        &self,
        client: &async_nats::Client,
    ) -> BoxStream<'static, Resumed<kv::Entry>> {
        resume::kv_watch(client, self.links.clone(), None, true)
    }

    /// Every change to a config from now on (no history), resumed like
    /// [`LatticeData::watch_links`]; after a reopen ([`Resumed::Reopened`]) a change may have
    /// been missed, so a reader should read again what it derived from configs.
    pub fn watch_configs(
        &self,
        client: &async_nats::Client,
    ) -> BoxStream<'static, Resumed<kv::Entry>> {
        resume::kv_watch(client, self.configs.clone(), None, false)
    }
}
