//! The lattice's shared data in JetStream KV: links (`LATTICEDATA_{lattice}`, one entry per
//! source as wasmCloud hosts keep them: [`crate::link_specs`]) and named configs (`CONFIGDATA_{lattice}`, a JSON object of strings per name), the buckets
//! wasmCloud hosts use.
//!
//! Writes come from whichever host the control interface's queue group hands a request to
//! ([`crate::control`]); every node watches both buckets and so learns every change, whoever
//! made it. Trellis nodes and simulated hosts keep this data the same way, so they can share a
//! lattice.

use std::collections::BTreeMap;

use anyhow::Context as _;
use async_nats::jetstream::kv;
use futures::stream::BoxStream;
use futures::StreamExt as _;
use tracing::debug;
use trellis_lattice::ctl::{self, Link};

use crate::link_specs::{self, ComponentSpec, LinkTable};
use crate::resume::{self, Resumed};

/// How long a link write keeps re-reading its source's entry while other writers change it
/// meanwhile: well within the 2 s a control-interface client waits for the reply. Writers of one
/// source are the hosts answering `link.*` at once, each retrying after a short random pause.
const SPEC_WRITE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

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
        Self::open_in(client, lattice, None).await
    }

    /// Like [`LatticeData::open`], in JetStream domain `domain` when given.
    pub async fn open_in(
        client: &async_nats::Client,
        lattice: &str,
        domain: Option<&str>,
    ) -> anyhow::Result<Self> {
        let js = crate::jetstream(client, domain);
        Ok(Self {
            links: crate::open_bucket(&js, &ctl::link_bucket(lattice), 1).await?,
            configs: crate::open_bucket(&js, &ctl::config_bucket(lattice), 1).await?,
        })
    }

    /// Puts `link` into its source's entry (wasmCloud's shape, [`crate::link_specs`]). The
    /// entry is shared by every link of the source and may be written by another host at the
    /// same time, so the write is a compare-and-set on the entry's revision, retried.
    pub async fn put_link(&self, link: &Link) -> anyhow::Result<()> {
        self.update_spec(&link.source_id, |spec| {
            spec.put(link);
            true
        })
        .await
        .with_context(|| format!("cannot store link {}", link.key()))?;
        Ok(())
    }

    /// Deletes the link from `source_id` with `name` on `namespace:package`; false if there
    /// was none.
    pub async fn delete_link(
        &self,
        source_id: &str,
        name: &str,
        namespace: &str,
        package: &str,
    ) -> anyhow::Result<bool> {
        let key = ctl::link_key(source_id, name, namespace, package);
        self.update_spec(source_id, |spec| spec.remove(&key))
            .await
            .with_context(|| format!("cannot delete link {key}"))
    }

    /// Reads `source_id`'s entry, lets `change` edit it, and writes it back if `change` says it
    /// changed something, unless another writer got there first (then again, from the top).
    async fn update_spec(
        &self,
        source_id: &str,
        mut change: impl FnMut(&mut ComponentSpec) -> bool,
    ) -> anyhow::Result<bool> {
        let key = link_specs::spec_key(source_id);
        let deadline = tokio::time::Instant::now() + SPEC_WRITE_PATIENCE;
        let mut attempts: u64 = 0;
        while tokio::time::Instant::now() < deadline {
            attempts += 1;
            let entry = self.links.entry(&key).await?;
            let current = entry
                .as_ref()
                .filter(|e| e.operation == kv::Operation::Put)
                .map(|e| serde_json::from_slice::<ComponentSpec>(&e.value))
                .transpose()
                .with_context(|| format!("{key} is not a component specification"))?;
            let mut spec = current.unwrap_or_default();
            if !change(&mut spec) {
                return Ok(false);
            }
            let value = serde_json::to_vec(&spec)?.into();
            let written = match &entry {
                Some(entry) => self.links.update(&key, value, entry.revision).await.is_ok(),
                None => self.links.create(&key, value).await.is_ok(),
            };
            if written {
                return Ok(true);
            }
            debug!(
                key,
                attempts, "link entry changed while writing; reading it again"
            );
            // A pause that differs between writers, so that they stop colliding.
            let random = {
                use std::hash::{BuildHasher as _, Hasher as _};
                std::collections::hash_map::RandomState::new()
                    .build_hasher()
                    .finish()
            };
            let pause = random % 5 + 1;
            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
        }
        anyhow::bail!(
            "{key} kept changing while writing it ({attempts} attempts in {SPEC_WRITE_PATIENCE:?})"
        )
    }

    /// The links from `source_id`, read now.
    pub async fn links_from(&self, source_id: &str) -> anyhow::Result<Vec<Link>> {
        let key = link_specs::spec_key(source_id);
        let Some(value) = self
            .links
            .get(&key)
            .await
            .with_context(|| format!("cannot read links {key}"))?
        else {
            return Ok(Vec::new());
        };
        let spec: ComponentSpec = serde_json::from_slice(&value)
            .with_context(|| format!("{key} is not a component specification"))?;
        Ok(spec.links)
    }

    /// Every link in the bucket, read now (not from a watch, which may lag a write).
    pub async fn links(&self) -> anyhow::Result<Vec<Link>> {
        let mut keys = self.links.keys().await.context("cannot list links")?;
        let mut table = LinkTable::default();
        while let Some(key) = keys.next().await {
            let key = key.context("cannot list links")?;
            if !key.starts_with(link_specs::SPEC_PREFIX) {
                continue;
            }
            let Some(entry) = self
                .links
                .entry(&key)
                .await
                .with_context(|| format!("cannot read links {key}"))?
            else {
                continue;
            };
            table.apply(&entry);
        }
        Ok(table.values().cloned().collect())
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

    /// Every link entry as it is now, then every change, for as long as the process lives: the
    /// watch reopens itself after a nats-server restart, resuming after the last revision seen
    /// ([`crate::resume`]). Each entry holds all links of its source, so a resumed watch leaves
    /// nothing stale; [`LinkTable::apply`] reads them.
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
