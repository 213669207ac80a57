//! The TOML config file (`--config trellis.toml` or `TRELLIS_CONFIG`): how to reach NATS, for
//! every command, and the controller's plugin folder and limits.
//!
//! ```toml
//! [nats]                  # flags and TRELLIS_* variables win over these
//! url = "tls://nats.example.com:4222"
//! lattice = "prod"
//! creds = "/etc/trellis/trellis.creds"   # or user = "…" and password = "…"
//! tls_ca = "/etc/trellis/ca.pem"
//! tls_cert = "/etc/trellis/client.pem"   # with tls_key, for mutual TLS
//! tls_key = "/etc/trellis/client-key.pem"
//!
//! [plugins]
//! dir = "build/plugins"
//! deadline_ms = 50        # per call, every plugin
//! memory_mib = 64         # per call, every plugin
//!
//! [plugins.limits.spreadscaler]   # by plugin name (as `trellis plugin list` shows it)
//! deadline_ms = 20
//! memory_mib = 32
//!
//! [placement]             # how many hosts one ranking looks at (docs/scale.md)
//! shortlist_percent = 1   # of the hosts that qualify (default 1), or "adaptive": Kubernetes'
//!                         # share, 50 % down to 5 % as the lattice grows
//! shortlist_floor = 100   # never fewer (all of them when fewer qualify; default 100)
//! default_policy = "load-aware"   # the placement policy of apps that name none
//!                                 # (annotation `trellis.dev/placement`); default: none
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use trellis_runtime::{Limits, Shortlist, MAX_MEMORY};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub nats: NatsSection,
    #[serde(default)]
    pub plugins: PluginsSection,
    #[serde(default)]
    pub placement: PlacementSection,
}

/// `[placement]`: the shortlist a placement ranking scores (`trellis_runtime::Shortlist`), and
/// the placement policy of apps that name none.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementSection {
    pub shortlist_percent: Option<Share>,
    pub shortlist_floor: Option<usize>,
    pub default_policy: Option<String>,
}

/// `shortlist_percent`: a percentage, or a named rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Share {
    Percent(i64),
    Named(String),
}

/// `[nats]`: where NATS is and how to prove who we are. Each field has a flag and an
/// environment variable of the same name (`--tls-ca`, `TRELLIS_TLS_CA`) that win over it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSection {
    pub url: Option<String>,
    pub lattice: Option<String>,
    pub creds: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsSection {
    pub dir: Option<PathBuf>,
    pub deadline_ms: Option<u64>,
    pub memory_mib: Option<usize>,
    #[serde(default)]
    pub limits: BTreeMap<String, LimitOverride>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverride {
    pub deadline_ms: Option<u64>,
    pub memory_mib: Option<usize>,
}

impl ConfigFile {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// The limits for plugins without an override, and the overrides by plugin name.
    pub fn limits(&self) -> anyhow::Result<(Limits, HashMap<String, Limits>)> {
        let base = apply(
            Limits::default(),
            self.plugins.deadline_ms,
            self.plugins.memory_mib,
            "[plugins]",
        )?;
        let mut per_plugin = HashMap::new();
        for (name, o) in &self.plugins.limits {
            let limits = apply(
                base,
                o.deadline_ms,
                o.memory_mib,
                &format!("[plugins.limits.{name}]"),
            )?;
            per_plugin.insert(name.clone(), limits);
        }
        Ok((base, per_plugin))
    }
}

impl PlacementSection {
    pub fn shortlist(&self) -> anyhow::Result<Shortlist> {
        let mut shortlist = Shortlist::default();
        match &self.shortlist_percent {
            None => {}
            Some(Share::Percent(p @ 1..=100)) => shortlist.percent = Some(*p as u8),
            Some(Share::Named(name)) if name == "adaptive" => shortlist.percent = None,
            Some(other) => bail!(
                "[placement] shortlist_percent must be a percentage from 1 to 100, or \"adaptive\" (Kubernetes' share); got {other:?}"
            ),
        }
        if let Some(floor) = self.shortlist_floor {
            if floor == 0 {
                bail!("[placement] shortlist_floor must be at least 1");
            }
            shortlist.floor = floor;
        }
        Ok(shortlist)
    }
}

fn apply(
    mut limits: Limits,
    deadline_ms: Option<u64>,
    memory_mib: Option<usize>,
    section: &str,
) -> anyhow::Result<Limits> {
    if let Some(ms) = deadline_ms {
        if ms == 0 {
            bail!("{section} deadline_ms must be at least 1");
        }
        limits.deadline = Duration::from_millis(ms);
    }
    if let Some(mib) = memory_mib {
        let bytes = mib.saturating_mul(1 << 20);
        if mib == 0 || bytes > MAX_MEMORY {
            bail!(
                "{section} memory_mib must be between 1 and {}",
                MAX_MEMORY >> 20
            );
        }
        limits.memory = bytes;
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_plugin_limits_override_the_defaults() {
        let config: ConfigFile = toml::from_str(
            "[plugins]\ndeadline_ms = 40\nmemory_mib = 32\n[plugins.limits.spreadscaler]\ndeadline_ms = 10\n",
        )
        .unwrap();
        let (base, per) = config.limits().unwrap();
        assert_eq!(base.deadline, Duration::from_millis(40));
        assert_eq!(base.memory, 32 << 20);
        let spread = per["spreadscaler"];
        assert_eq!(spread.deadline, Duration::from_millis(10));
        assert_eq!(spread.memory, 32 << 20, "inherits the [plugins] cap");
    }

    #[test]
    fn nats_section_reads_every_connection_setting() {
        let config: ConfigFile = toml::from_str(
            "[nats]\nurl = \"tls://n:4222\"\nlattice = \"prod\"\nuser = \"a\"\npassword = \"b\"\ntls_ca = \"ca.pem\"\n",
        )
        .unwrap();
        assert_eq!(config.nats.url.as_deref(), Some("tls://n:4222"));
        assert_eq!(config.nats.lattice.as_deref(), Some("prod"));
        assert_eq!(config.nats.tls_ca, Some(PathBuf::from("ca.pem")));
        let err = toml::from_str::<ConfigFile>("[nats]\npass = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("pass"), "{err}");
    }

    #[test]
    fn nonsense_limits_are_refused_with_the_section() {
        let config: ConfigFile =
            toml::from_str("[plugins.limits.big]\nmemory_mib = 999999\n").unwrap();
        let err = config.limits().unwrap_err().to_string();
        assert!(err.contains("[plugins.limits.big]"), "{err}");
        assert!(toml::from_str::<ConfigFile>("[plugins]\ndeadline = 3\n").is_err());
    }

    #[test]
    fn the_placement_shortlist_is_read_and_checked() {
        let config: ConfigFile =
            toml::from_str("[placement]\nshortlist_percent = 10\nshortlist_floor = 20\n").unwrap();
        let shortlist = config.placement.shortlist().unwrap();
        assert_eq!((shortlist.percent, shortlist.floor), (Some(10), 20));
        assert_eq!(
            ConfigFile::default().placement.shortlist().unwrap(),
            Shortlist::default()
        );
        let config: ConfigFile =
            toml::from_str("[placement]\nshortlist_percent = \"adaptive\"\n").unwrap();
        assert_eq!(config.placement.shortlist().unwrap(), Shortlist::KUBERNETES);
        for bad in ["0", "101", "-3", "\"most\""] {
            let config: ConfigFile =
                toml::from_str(&format!("[placement]\nshortlist_percent = {bad}\n")).unwrap();
            let err = config.placement.shortlist().unwrap_err().to_string();
            assert!(err.contains("shortlist_percent"), "{bad}: {err}");
        }
        let config: ConfigFile = toml::from_str("[placement]\nshortlist_floor = 0\n").unwrap();
        assert!(config.placement.shortlist().is_err());
    }
}
