//! Plain Rust mirrors of the WIT records a plugin sees (`trellis:plugin/types` and the scaler
//! context). Lists of `key=value` pairs become [`Labels`] maps: sorted, one value per key, so that
//! comparisons and commands are deterministic.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

/// `key=value` pairs: host labels, annotations, config entries, placement requirements.
pub type Labels = BTreeMap<String, String>;

/// A host of the lattice.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Host {
    /// The host's lattice-wide id, by which commands and queries name it.
    pub id: String,
    /// A name for people, for messages; hosts are told apart by `id`.
    pub friendly_name: String,
    /// The host's labels (`region=east`), which placement requirements and spreads match.
    pub labels: Labels,
    /// Seconds since the host started.
    pub uptime_seconds: u64,
}

/// A component's instances on one host without their annotations: what
/// [`Lattice::component_counts`](crate::Lattice::component_counts) answers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ComponentCount {
    /// The host the instances run on.
    pub host_id: String,
    /// The image the host reports running (empty when it does not say); compare it with the
    /// manifest's through [`crate::image`], not as strings.
    pub image: String,
    /// The host's maximum concurrent instances of the component.
    pub count: u32,
}

/// A component running on one host; `count` is the host's maximum concurrent instances.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ComponentInstance {
    /// The host the instances run on.
    pub host_id: String,
    /// The component's lattice-wide id ([`ComponentSpec::id`]).
    pub component_id: String,
    /// The image the host reports running (empty when it does not say); compare it with the
    /// manifest's through [`crate::image`], not as strings.
    pub image: String,
    /// The host's maximum concurrent instances of the component.
    pub count: u32,
    /// The annotations the instances were started with, among them the app that started them
    /// ([`diff::APP_ANNOTATION`](crate::diff::APP_ANNOTATION)).
    pub annotations: Labels,
}

/// A capability provider running on one host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProviderInstance {
    /// The host the provider runs on.
    pub host_id: String,
    /// The provider's lattice-wide id ([`ComponentSpec::id`]).
    pub provider_id: String,
    /// The image the host reports running (empty when it does not say); compare it with the
    /// manifest's through [`crate::image`], not as strings.
    pub image: String,
    /// The annotations the provider was started with, among them the app that started it
    /// ([`diff::APP_ANNOTATION`](crate::diff::APP_ANNOTATION)): a provider may be shared.
    pub annotations: Labels,
}

/// A link from a source to a target over one WIT package's interfaces.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    /// The lattice-wide id of the link's source.
    pub source_id: String,
    /// The target's lattice-wide id.
    pub target: String,
    /// The link's name, which tells apart several links of one source over the same package
    /// (usually `default`).
    pub name: String,
    /// The namespace of the WIT package the link carries (`wasi` of `wasi:http`).
    pub wit_namespace: String,
    /// The WIT package the link carries (`http` of `wasi:http`).
    pub wit_package: String,
    /// The package's interfaces the link carries (e.g. `incoming-handler`).
    pub interfaces: Vec<String>,
    /// Names of the configs the source gets for this link.
    pub source_config: Vec<String>,
    /// Names of the configs the target gets for this link.
    pub target_config: Vec<String>,
}

impl Link {
    /// Whether `other` is the same link slot: a source has at most one link per
    /// (namespace, package, name), and a put replaces it.
    pub fn same_slot(&self, other: &Link) -> bool {
        self.source_id == other.source_id
            && self.name == other.name
            && self.wit_namespace == other.wit_namespace
            && self.wit_package == other.wit_package
    }
}

/// A command a scaler asks the controller to issue. The controller adds the app, scaler and
/// managed-by annotations itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Set the instance count of a component on a host (0 stops it).
    ScaleComponent {
        /// The host to scale on.
        host_id: String,
        /// The component's lattice-wide id.
        component_id: String,
        /// The image to run; a host running another swaps it in place.
        image: String,
        /// How many instances the host should run, not a change to it; 0 stops them all.
        count: u32,
        /// Names of the configs the component is started with.
        config: Vec<String>,
    },
    /// Start a provider on a host; a host runs at most one provider of each id.
    StartProvider {
        /// The host to start it on.
        host_id: String,
        /// The provider's lattice-wide id.
        provider_id: String,
        /// The image to start.
        image: String,
        /// Names of the configs the provider is started with.
        config: Vec<String>,
    },
    /// Stop a provider on a host.
    StopProvider {
        /// The host to stop it on.
        host_id: String,
        /// The provider's lattice-wide id.
        provider_id: String,
    },
    /// Create a link, replacing the one in the same slot (see [`Link::same_slot`]).
    PutLink(Link),
    /// Delete a source's link in one slot: namespace, package and name.
    DeleteLink {
        /// The lattice-wide id of the link's source.
        source_id: String,
        /// The link's name.
        name: String,
        /// The namespace of the link's WIT package (`wasi` of `wasi:http`).
        wit_namespace: String,
        /// The link's WIT package (`http` of `wasi:http`).
        wit_package: String,
    },
    /// Create or replace a named config.
    PutConfig {
        /// The config's name.
        name: String,
        /// Its entries: the config's whole content once the command takes effect.
        entries: Labels,
    },
    /// Delete the config of this name.
    DeleteConfig(String),
}

/// Where a scaler stands after a reconcile call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The lattice already matches what the trait asks for.
    Deployed,
    /// The returned commands are under way toward what the trait asks for; the text says what
    /// is happening.
    Reconciling(String),
    /// The trait cannot be satisfied as written; the text says why.
    Failed(String),
    /// Nothing to do until something outside the scaler changes (e.g. fewer hosts qualify than
    /// it needs); the text says what it waits for.
    Waiting(String),
}

/// Whether a manifest component is a component or a capability provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ComponentKind {
    /// A WebAssembly component: runs a count of instances per host.
    #[default]
    Component,
    /// A capability provider: at most one per host, started and stopped rather than scaled.
    Provider,
}

/// A component of the application manifest, as a scaler sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ComponentSpec {
    /// The name in the manifest (`spec.components[].name`).
    pub name: String,
    /// Component or provider, which decides the commands that run it.
    pub kind: ComponentKind,
    /// Where the code comes from (`file://…`, an OCI reference, or a built-in provider).
    pub image: String,
    /// The lattice-wide id the controller assigned.
    pub id: String,
    /// Names of the configs the component is started with.
    pub config: Vec<String>,
}

/// What a scaler is asked to reconcile: one trait of one component of one application.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScalerContext {
    /// The application's name.
    pub app: String,
    /// The application's version, as its manifest gives it.
    pub version: String,
    /// The component the trait is attached to.
    pub component: ComponentSpec,
    /// The application's components (for links: the targets' ids): every one when the app
    /// has at most 256; past that, the trait's own component and those whose names appear as
    /// strings in its properties (so a call costs the trait's size, not the app's).
    /// [`ScalerContext::component_named`] finds a link target either way.
    pub components: Vec<ComponentSpec>,
    /// The trait's type (`spreadscaler`, `link`, …): one of those this scaler's
    /// [`describe`](crate::Scaler::describe) lists.
    pub trait_type: String,
    /// The trait's properties as JSON text; read them with [`ScalerContext::properties`].
    pub properties: String,
    /// What this scaler returned as [`Reconciled::memo`](crate::Reconciled) from its last
    /// reconcile of this trait: how a scaler remembers across calls (when it last scaled,
    /// since when load has been low). `None` at first and after the controller restarts or
    /// hands the app to another controller: decide safely without one.
    pub memo: Option<String>,
}

/// The trait's properties did not fit the type the scaler expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid properties of trait `{trait_type}` at `{path}`: {message}")]
pub struct PropertyError {
    /// The type of the trait whose properties were refused.
    pub trait_type: String,
    /// Where in the properties the problem is, e.g. `spread[1].weight` (`.` for the whole).
    pub path: String,
    /// What is wrong there, as the deserialiser put it.
    pub message: String,
}

impl ScalerContext {
    /// The trait's properties, deserialised into `T`. The error names the field path and the
    /// trait type, so that a status message points at the line of the manifest to fix.
    pub fn properties<T: DeserializeOwned>(&self) -> Result<T, PropertyError> {
        let text = if self.properties.trim().is_empty() {
            "{}"
        } else {
            self.properties.as_str()
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| PropertyError {
            trait_type: self.trait_type.clone(),
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
        de.end().map_err(|e| PropertyError {
            trait_type: self.trait_type.clone(),
            path: ".".into(),
            message: e.to_string(),
        })?;
        Ok(value)
    }

    /// What [`ScalerContext::properties`] would refuse, as diagnostics: the usual body of
    /// [`Scaler::check`](crate::Scaler::check).
    pub fn check_properties<T: DeserializeOwned>(&self) -> Vec<Diagnostic> {
        match self.properties::<T>() {
            Ok(_) => Vec::new(),
            Err(e) => vec![e.to_diagnostic()],
        }
    }

    /// The application component with this manifest name.
    pub fn component_named(&self, name: &str) -> Option<&ComponentSpec> {
        self.components.iter().find(|c| c.name == name)
    }
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PluginInfo {
    /// Unique name, e.g. `spreadscaler`.
    pub name: String,
    /// The plugin's own version (semver).
    pub version: String,
    /// For scalers: the trait types this plugin handles.
    pub trait_types: Vec<String>,
    /// One line for `trellis plugin list`.
    pub description: String,
}

/// Severity of a validator diagnostic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Refuses the manifest when it is put or validated.
    Error,
    /// Shown to people; the manifest is still accepted.
    Warning,
    /// A remark for people; the manifest is accepted.
    Info,
}

/// One finding of a validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// How serious the finding is: only an error refuses the manifest.
    pub severity: Severity,
    /// Path into the manifest, e.g. `spec.components[1].traits[0].properties.instances`.
    pub path: String,
    /// What is wrong, in a sentence for people.
    pub message: String,
    /// What to do about it; empty when there is nothing to add.
    pub hint: String,
}

impl Diagnostic {
    /// An error at `path`, which refuses the manifest; `hint` may be empty.
    pub fn error(
        path: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Error,
            path: path.into(),
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// A warning at `path`: shown to people, but the manifest is accepted; `hint` may be empty.
    pub fn warning(
        path: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(path, message, hint)
        }
    }
}

impl PropertyError {
    /// This error as a diagnostic whose path is relative to the trait's properties.
    pub fn to_diagnostic(&self) -> Diagnostic {
        let path = if self.path == "." {
            String::new()
        } else {
            self.path.clone()
        };
        Diagnostic::error(
            path,
            format!(
                "invalid properties of trait `{}`: {}",
                self.trait_type, self.message
            ),
            "fix the field as the trait's reference in docs/manifest.md describes it",
        )
    }
}

/// A request to place one more instance of a component or provider.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlacementRequest {
    /// The lattice-wide id of the component or provider to place.
    pub component_id: String,
    /// Labels a host must carry.
    pub requirements: Labels,
}

/// Turns `[("k", "v")]` into [`Labels`]; handy in tests and defaults.
pub fn label_map<K: ToString, V: ToString>(pairs: &[(K, V)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Props {
        instances: usize,
        #[serde(default)]
        spread: Vec<SpreadProps>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct SpreadProps {
        name: String,
        weight: Option<usize>,
    }

    fn ctx(properties: &str) -> ScalerContext {
        ScalerContext {
            trait_type: "spreadscaler".into(),
            properties: properties.into(),
            ..Default::default()
        }
    }

    #[test]
    fn properties_parse() {
        let p: Props = ctx(r#"{"instances": 2, "spread": [{"name": "a", "weight": 3}]}"#)
            .properties()
            .unwrap();
        assert_eq!(p.instances, 2);
        assert_eq!(p.spread[0].weight, Some(3));
    }

    #[test]
    fn property_error_names_path_and_trait() {
        let err =
            ctx(r#"{"instances": 2, "spread": [{"name": "a"}, {"name": "b", "weight": "x"}]}"#)
                .properties::<Props>()
                .unwrap_err();
        assert_eq!(err.path, "spread[1].weight");
        assert_eq!(err.trait_type, "spreadscaler");
        let text = err.to_string();
        assert!(text.contains("`spreadscaler`"), "{text}");
        assert!(text.contains("spread[1].weight"), "{text}");
    }

    #[test]
    fn property_error_on_missing_and_unknown_fields() {
        let err = ctx("{}").properties::<Props>().unwrap_err();
        assert!(err.message.contains("instances"), "{err}");
        let err = ctx(r#"{"instances": 1, "replicaz": 2}"#)
            .properties::<Props>()
            .unwrap_err();
        assert!(err.message.contains("replicaz"), "{err}");
    }

    #[test]
    fn property_error_on_bad_json() {
        let err = ctx(r#"{"instances": 1} trailing"#)
            .properties::<Props>()
            .unwrap_err();
        assert_eq!(err.path, ".");
    }

    #[test]
    fn link_slot_ignores_target_and_interfaces() {
        let a = Link {
            source_id: "s".into(),
            target: "t1".into(),
            name: "default".into(),
            wit_namespace: "wasi".into(),
            wit_package: "http".into(),
            ..Default::default()
        };
        let b = Link {
            target: "t2".into(),
            interfaces: vec!["x".into()],
            ..a.clone()
        };
        assert!(a.same_slot(&b));
        assert!(!a.same_slot(&Link {
            name: "other".into(),
            ..b
        }));
    }
}
