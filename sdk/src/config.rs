//! Named configs as manifests write them, and the commands that keep them in place. A config
//! with `properties` belongs to the app (put when missing, put again when it drifts, deleted on
//! cleanup); one without must be provided by someone else and is only checked for.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::lattice::Lattice;
use crate::types::{Command, Labels};

/// A named config in a manifest (`properties.config[]` of a component, a link's source or
/// target `config[]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigProperty {
    /// The config's name on the lattice, by which components and links refer to it.
    pub name: String,
    /// The entries the manifest defines for the config. Present: the app owns the config and
    /// puts it; absent: someone else provides it, and it is only checked for.
    #[serde(default)]
    pub properties: Option<BTreeMap<String, ConfigValue>>,
}

/// A config value: YAML writes `port: 8080` as a number, the lattice stores text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ConfigValue {
    /// A value written as text, kept as it is.
    Text(String),
    /// A value YAML reads as a whole number (`port: 8080`), stored as its decimal text.
    Integer(i64),
    /// A value YAML reads as a boolean (`tls: false`), stored as `true` or `false`.
    Bool(bool),
}

impl std::fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigValue::Text(s) => f.write_str(s),
            ConfigValue::Integer(n) => write!(f, "{n}"),
            ConfigValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl ConfigProperty {
    /// The entries to put, when the manifest defines them (the app owns the config).
    pub fn entries(&self) -> Option<Labels> {
        self.properties
            .as_ref()
            .map(|p| p.iter().map(|(k, v)| (k.clone(), v.to_string())).collect())
    }
}

/// Where a list of configs stands on the lattice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigState {
    /// `PutConfig` for the owned configs that are missing or differ from the manifest.
    pub commands: Vec<Command>,
    /// Owned configs that do not exist yet (a subset of what `commands` puts).
    pub created: Vec<String>,
    /// Owned configs that exist but differ: drift being repaired.
    pub drifted: Vec<String>,
    /// Configs the manifest only names, which do not exist.
    pub missing_external: Vec<String>,
}

/// Compares `configs` (duplicates by name count once) with the lattice.
pub fn converge_configs<'a>(
    configs: impl IntoIterator<Item = &'a ConfigProperty>,
    lattice: &dyn Lattice,
) -> ConfigState {
    let mut state = ConfigState::default();
    let mut seen = BTreeSet::new();
    for config in configs {
        if !seen.insert(config.name.as_str()) {
            continue;
        }
        let current = lattice.config(&config.name);
        match (config.entries(), current) {
            (Some(entries), current) => {
                if current.as_ref() == Some(&entries) {
                    continue;
                }
                match current {
                    None => state.created.push(config.name.clone()),
                    Some(_) => state.drifted.push(config.name.clone()),
                }
                state.commands.push(Command::PutConfig {
                    name: config.name.clone(),
                    entries,
                });
            }
            (None, None) => state.missing_external.push(config.name.clone()),
            (None, Some(_)) => {}
        }
    }
    state
}

/// `DeleteConfig` for every owned config (duplicates once), for cleanup.
pub fn delete_owned<'a>(configs: impl IntoIterator<Item = &'a ConfigProperty>) -> Vec<Command> {
    let mut seen = BTreeSet::new();
    configs
        .into_iter()
        .filter(|c| c.properties.is_some() && seen.insert(c.name.as_str()))
        .map(|c| Command::DeleteConfig(c.name.clone()))
        .collect()
}

/// `config 'a' does not exist` / `configs 'a', 'b' do not exist`.
pub fn describe_missing(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    match quoted.as_slice() {
        [one] => format!("config {one} does not exist"),
        many => format!("configs {} do not exist", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestLattice;

    fn owned(name: &str, entries: &[(&str, &str)]) -> ConfigProperty {
        ConfigProperty {
            name: name.into(),
            properties: Some(
                entries
                    .iter()
                    .map(|(k, v)| (k.to_string(), ConfigValue::Text(v.to_string())))
                    .collect(),
            ),
        }
    }

    fn external(name: &str) -> ConfigProperty {
        ConfigProperty {
            name: name.into(),
            properties: None,
        }
    }

    #[test]
    fn puts_missing_and_drifted_names_missing_external() {
        let lattice = TestLattice::new()
            .with_config("same", &[("k", "v")])
            .with_config("drift", &[("k", "old")]);
        let configs = [
            owned("same", &[("k", "v")]),
            owned("drift", &[("k", "new")]),
            owned("new", &[("k", "v")]),
            owned("new", &[("k", "v")]),
            external("ext"),
        ];
        let state = converge_configs(&configs, &lattice);
        assert_eq!(state.created, ["new"]);
        assert_eq!(state.drifted, ["drift"]);
        assert_eq!(state.missing_external, ["ext"]);
        assert_eq!(state.commands.len(), 2);
        assert_eq!(
            delete_owned(&configs),
            [
                Command::DeleteConfig("same".into()),
                Command::DeleteConfig("drift".into()),
                Command::DeleteConfig("new".into())
            ]
        );
        assert_eq!(
            describe_missing(&["a".into(), "b".into()]),
            "configs 'a', 'b' do not exist"
        );
    }

    #[test]
    fn numbers_and_booleans_become_text() {
        let parsed: ConfigProperty =
            serde_json::from_str(r#"{"name": "c", "properties": {"port": 8080, "tls": false}}"#)
                .unwrap();
        assert_eq!(
            parsed.entries().unwrap(),
            crate::label_map(&[("port", "8080"), ("tls", "false")])
        );
    }
}
