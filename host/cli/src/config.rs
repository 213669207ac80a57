//! The controller's TOML config file (`trellis controller --config trellis.toml`).
//!
//! ```toml
//! [plugins]
//! dir = "build/plugins"
//! deadline_ms = 50        # per call, every plugin
//! memory_mib = 64         # per call, every plugin
//!
//! [plugins.limits.spreadscaler]   # by plugin name (as `trellis plugin list` shows it)
//! deadline_ms = 20
//! memory_mib = 32
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use trellis_runtime::{Limits, MAX_MEMORY};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub plugins: PluginsSection,
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
    fn nonsense_limits_are_refused_with_the_section() {
        let config: ConfigFile =
            toml::from_str("[plugins.limits.big]\nmemory_mib = 999999\n").unwrap();
        let err = config.limits().unwrap_err().to_string();
        assert!(err.contains("[plugins.limits.big]"), "{err}");
        assert!(toml::from_str::<ConfigFile>("[plugins]\ndeadline = 3\n").is_err());
    }
}
