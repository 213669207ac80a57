//! What a scaler may act on: the component and provider ids its app declares, and the configs
//! its app defines. A plugin is handed one app's trait; a command it returns about another
//! app's component (scale it to zero, relink it, overwrite its config) is refused, with every
//! other command of that call, before anything is sent.

use std::collections::HashSet;

use trellis_lattice::Manifest;
use trellis_runtime::bindings::Command;

use crate::isolation::{claims, Claim};

/// The names one app's scalers may touch.
pub(crate) struct AppScope {
    ids: HashSet<String>,
    configs: HashSet<String>,
}

impl AppScope {
    pub fn of(manifest: &Manifest) -> Self {
        let mut scope = Self {
            ids: HashSet::new(),
            configs: HashSet::new(),
        };
        for claim in claims(manifest) {
            match claim {
                Claim::ComponentId(id) => {
                    scope.ids.insert(id);
                }
                // Only configs the app defines: it puts them and deletes them on undeploy. A
                // config it merely names was put by someone else.
                Claim::Config {
                    name,
                    defined: true,
                } => {
                    scope.configs.insert(name);
                }
                Claim::Config { .. } | Claim::Bucket(_) => {}
            }
        }
        scope
    }

    /// Why `commands` reach outside the app, naming the first command that does.
    pub fn check(&self, commands: &[Command]) -> Result<(), String> {
        for (i, command) in commands.iter().enumerate() {
            let (what, name, known) = match command {
                Command::ScaleComponent(c) => ("component", &c.component_id, &self.ids),
                Command::StartProvider(c) => ("provider", &c.provider_id, &self.ids),
                Command::StopProvider(c) => ("provider", &c.provider_id, &self.ids),
                Command::PutLink(l) => ("link source", &l.source_id, &self.ids),
                Command::DeleteLink(l) => ("link source", &l.source_id, &self.ids),
                Command::PutConfig(c) => ("config", &c.name, &self.configs),
                Command::DeleteConfig(name) => ("config", name, &self.configs),
            };
            if !known.contains(name) {
                return Err(format!(
                    "the plugin's command {i} is about {what} `{name}`, which this app does not declare; none of its commands were sent"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_runtime::bindings::{PutConfig, ScaleComponent};

    fn manifest() -> Manifest {
        Manifest::parse(
            "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: shop\n  \
             annotations:\n    version: v1\nspec:\n  components:\n    - name: web\n      \
             type: component\n      properties:\n        image: f\n        config:\n          \
             - name: shop-settings\n            properties: {a: b}\n          - name: shared\n",
        )
        .unwrap()
    }

    fn scale(id: &str) -> Command {
        Command::ScaleComponent(ScaleComponent {
            host_id: "h".into(),
            component_id: id.into(),
            image: "f".into(),
            count: 0,
            config: Vec::new(),
        })
    }

    fn put_config(name: &str) -> Command {
        Command::PutConfig(PutConfig {
            name: name.into(),
            entries: Vec::new(),
        })
    }

    #[test]
    fn the_apps_own_ids_and_configs_pass() {
        let scope = AppScope::of(&manifest());
        assert!(scope
            .check(&[scale("shop-web"), put_config("shop-settings")])
            .is_ok());
    }

    #[test]
    fn another_apps_component_is_refused() {
        let scope = AppScope::of(&manifest());
        let err = scope
            .check(&[scale("shop-web"), scale("bank-vault")])
            .unwrap_err();
        assert!(
            err.contains("command 1 is about component `bank-vault`"),
            "{err}"
        );
    }

    #[test]
    fn a_config_the_app_only_names_is_refused() {
        let scope = AppScope::of(&manifest());
        assert!(scope.check(&[put_config("shared")]).is_err());
    }
}
