//! The OAM application manifest, in the format wadm reads (`core.oam.dev/v1beta1`).
//!
//! Trait properties stay as JSON values: every trait type has its own schema, owned by the
//! plugin that handles it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::limits::{self, OverLimit};
use crate::strict;

pub const OAM_VERSION: &str = "core.oam.dev/v1beta1";
pub const APPLICATION_KIND: &str = "Application";
pub const VERSION_ANNOTATION: &str = "version";
pub const DESCRIPTION_ANNOTATION: &str = "description";
/// The annotation naming an app's placement policy (an opt-in placement plugin).
pub const PLACEMENT_ANNOTATION: &str = "trellis.dev/placement";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The text is not YAML or JSON, or does not have the manifest's shape.
    #[error("manifest is not a valid application manifest{}: {message}", location_suffix(*.line, *.column))]
    Syntax {
        message: String,
        line: Option<usize>,
        column: Option<usize>,
    },
    #[error(
        "manifest has no version: set `metadata.annotations.version` (e.g. `version: v0.1.0`)"
    )]
    MissingVersion,
    /// The manifest is larger than the controller takes ([`crate::limits`]).
    #[error("manifest refused: {0}")]
    OverLimit(#[from] OverLimit),
}

fn location_suffix(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" (line {l}, column {c})"),
        (Some(l), None) => format!(" (line {l})"),
        _ => String::new(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Specification,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub name: String,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "strict::string_map"
    )]
    pub annotations: BTreeMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "strict::string_map"
    )]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Specification {
    pub components: Vec<Component>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Policy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    #[serde(rename = "type")]
    pub policy_type: String,
    #[serde(default, deserialize_with = "strict::string_map")]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ComponentType {
    #[serde(rename = "component", alias = "actor")]
    Component,
    #[serde(rename = "capability")]
    Capability,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Component {
    pub name: String,
    #[serde(rename = "type")]
    pub component_type: ComponentType,
    pub properties: ComponentProperties,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traits: Option<Vec<Trait>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<SharedApplication>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<ConfigProperty>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedApplication {
    pub name: String,
    pub component: String,
}

/// A named config; with `properties` the controller puts it, without it must exist already.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigProperty {
    pub name: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "strict::optional_string_map"
    )]
    pub properties: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trait {
    #[serde(rename = "type")]
    pub trait_type: String,
    #[serde(default, deserialize_with = "strict::value")]
    pub properties: serde_json::Value,
}

impl Manifest {
    /// Parses a manifest from YAML or JSON text. Errors name the line and column.
    ///
    /// The text's size is checked before parsing and the manifest's counts right after, so
    /// nothing downstream (validation, planning, the store) sees a manifest past
    /// [`crate::limits`]. Parsing itself is linear: both parsers bound nesting depth (128)
    /// and serde_yaml_ng bounds alias expansion.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        limits::check(
            "the manifest's size in bytes",
            text.len(),
            limits::MAX_MANIFEST_BYTES,
            "; split the application into several apps",
        )?;
        // JSON is (nearly) YAML, but serde_json gives better messages for JSON documents.
        let trimmed = text.trim_start();
        let manifest: Self = if trimmed.starts_with('{') {
            serde_json::from_str(text).map_err(|e| ManifestError::Syntax {
                message: strip_location(&e.to_string()),
                line: Some(e.line()),
                column: Some(e.column()),
            })?
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| {
                let location = e.location();
                ManifestError::Syntax {
                    message: strip_location(&e.to_string()),
                    line: location.as_ref().map(|l| l.line()),
                    column: location.as_ref().map(|l| l.column()),
                }
            })?
        };
        manifest.check_counts()?;
        Ok(manifest)
    }

    /// Checks the counts [`crate::limits`] bounds: components and traits.
    pub fn check_counts(&self) -> Result<(), OverLimit> {
        let components = &self.spec.components;
        limits::check(
            "the number of components",
            components.len(),
            limits::MAX_COMPONENTS,
            "; split the application into several apps",
        )?;
        let mut traits = 0;
        for component in components {
            let n = component.traits.as_ref().map_or(0, Vec::len);
            limits::check(
                "the number of traits on one component",
                n,
                limits::MAX_TRAITS_PER_COMPONENT,
                "",
            )?;
            traits += n;
        }
        limits::check(
            "the number of traits",
            traits,
            limits::MAX_TRAITS,
            "; split the application into several apps",
        )
    }

    /// Parses and checks the manifest has what the store needs (a version).
    pub fn parse_versioned(text: &str) -> Result<Self, ManifestError> {
        let manifest = Self::parse(text)?;
        if manifest.version().is_empty() {
            return Err(ManifestError::MissingVersion);
        }
        Ok(manifest)
    }

    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    pub fn version(&self) -> &str {
        self.metadata
            .annotations
            .get(VERSION_ANNOTATION)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The placement policy the app asks for (`metadata.annotations."trellis.dev/placement"`):
    /// the name of an opt-in placement plugin, e.g. `load-aware`.
    pub fn placement_policy(&self) -> Option<&str> {
        self.metadata
            .annotations
            .get(PLACEMENT_ANNOTATION)
            .map(String::as_str)
    }

    pub fn description(&self) -> Option<&str> {
        self.metadata
            .annotations
            .get(DESCRIPTION_ANNOTATION)
            .map(String::as_str)
    }

    /// The lattice-wide id of a component: the one the manifest sets, or `{app}-{name}`
    /// normalised the way wadm does it, so both controllers agree on ids.
    pub fn component_id(&self, component: &Component) -> String {
        if let Some(id) = &component.properties.id {
            return id.clone();
        }
        format!(
            "{}-{}",
            normalise_id(&self.metadata.name),
            normalise_id(&component.name)
        )
    }
}

fn normalise_id(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// serde_yaml and serde_json append "at line X column Y"; we report the location ourselves.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECHO: &str = r#"
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: echo
  annotations:
    version: v0.1.0
spec:
  components:
    - name: echo
      type: component
      properties:
        image: file://./echo.wasm
      traits:
        - type: spreadscaler
          properties:
            instances: 2
"#;

    #[test]
    fn parses_yaml_manifest() {
        let m = Manifest::parse_versioned(ECHO).unwrap();
        assert_eq!(m.name(), "echo");
        assert_eq!(m.version(), "v0.1.0");
        let c = &m.spec.components[0];
        assert_eq!(c.component_type, ComponentType::Component);
        assert_eq!(m.component_id(c), "echo-echo");
        let t = &c.traits.as_ref().unwrap()[0];
        assert_eq!(t.properties["instances"], 2);
    }

    #[test]
    fn json_round_trip() {
        let m = Manifest::parse(ECHO).unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(Manifest::parse(&json).unwrap(), m);
    }

    #[test]
    fn yaml_error_names_the_line() {
        let bad =
            "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: [unclosed\n";
        let err = Manifest::parse(bad).unwrap_err();
        let ManifestError::Syntax { line, .. } = &err else {
            panic!("wrong error {err}")
        };
        assert!(line.is_some(), "{err}");
        assert!(err.to_string().contains("line"), "{err}");
    }

    #[test]
    fn json_error_names_the_line() {
        let err = Manifest::parse("{\n \"apiVersion\": \"x\",\n \"kind\": }").unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
    }

    #[test]
    fn missing_field_is_named() {
        let err = Manifest::parse("apiVersion: x\nkind: Application\nmetadata:\n  name: a\n")
            .unwrap_err();
        assert!(err.to_string().contains("spec"), "{err}");
    }

    #[test]
    fn missing_version_is_refused() {
        let text = ECHO.replace("version: v0.1.0", "description: hi");
        assert!(matches!(
            Manifest::parse_versioned(&text),
            Err(ManifestError::MissingVersion)
        ));
    }

    #[test]
    fn explicit_id_wins_and_names_are_normalised() {
        let mut m = Manifest::parse(ECHO).unwrap();
        m.metadata.name = "My App".into();
        let mut c = m.spec.components[0].clone();
        c.name = "http-server".into();
        assert_eq!(m.component_id(&c), "my_app-http_server");
        c.properties.id = Some("custom".into());
        assert_eq!(m.component_id(&c), "custom");
    }
}

/// Hostile manifests: each is refused with an error that says why, quickly, and without
/// building anything its size does not pay for.
#[cfg(test)]
mod hostile {
    use super::*;

    fn header(components: &str) -> String {
        format!(
            "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: big\n  \
             annotations:\n    version: v1\nspec:\n  components:\n{components}"
        )
    }

    fn one_line_components(n: usize) -> String {
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&format!(
                "    - {{name: c{i}, type: component, properties: {{}}}}\n"
            ));
        }
        header(&text)
    }

    #[test]
    fn too_many_components_is_refused_naming_the_limit() {
        let text = one_line_components(14_000);
        assert!(text.len() < limits::MAX_MANIFEST_BYTES, "{}", text.len());
        let err = Manifest::parse(&text).unwrap_err().to_string();
        assert!(err.contains("components is 14000"), "{err}");
        assert!(err.contains("limit of 10000"), "{err}");
        // At the limit it parses.
        assert!(Manifest::parse(&one_line_components(limits::MAX_COMPONENTS)).is_ok());
    }

    #[test]
    fn oversized_text_is_refused_before_parsing() {
        let text = format!("{}#{}", header(""), "x".repeat(limits::MAX_MANIFEST_BYTES));
        let err = Manifest::parse(&text).unwrap_err().to_string();
        assert!(err.contains("size in bytes"), "{err}");
        assert!(
            err.contains(&limits::MAX_MANIFEST_BYTES.to_string()),
            "{err}"
        );
    }

    #[test]
    fn too_many_traits_on_a_component_is_refused() {
        let traits: String = (0..=limits::MAX_TRAITS_PER_COMPONENT)
            .map(|_| "        - {type: spreadscaler, properties: {instances: 1}}\n")
            .collect();
        let text = header(&format!(
            "    - name: c\n      type: component\n      properties: {{image: f}}\n      traits:\n{traits}"
        ));
        let err = Manifest::parse(&text).unwrap_err().to_string();
        assert!(err.contains("traits on one component"), "{err}");
    }

    #[test]
    fn alias_bomb_is_refused() {
        // Each level refers nine times to the one before: 9^9 nodes if expanded.
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        text.push_str(&header(
            "    - name: c\n      type: component\n      properties: {image: f}\n      traits:\n        - {type: spreadscaler, properties: *a9}\n",
        ));
        let started = std::time::Instant::now();
        let err = Manifest::parse(&text).unwrap_err().to_string();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(err.contains("not a valid application manifest"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused_in_yaml_and_json() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let yaml = header(&format!(
            "    - name: c\n      type: component\n      properties: {{image: f}}\n      traits:\n        - type: spreadscaler\n          properties: {deep}\n"
        ));
        let err = Manifest::parse(&yaml).unwrap_err().to_string();
        assert!(err.contains("recursion"), "{err}");
        let json = format!(
            r#"{{"apiVersion":"core.oam.dev/v1beta1","kind":"Application","metadata":{{"name":"a"}},"spec":{{"components":[{{"name":"c","type":"component","properties":{{}},"traits":[{{"type":"t","properties":{deep}}}]}}]}}}}"#
        );
        let err = Manifest::parse(&json).unwrap_err().to_string();
        assert!(err.contains("recursion"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let text = header(
            "    - name: c\n      name: d\n      type: component\n      properties: {image: f}\n",
        );
        let err = Manifest::parse(&text).unwrap_err().to_string();
        assert!(err.contains("duplicate"), "{err}");
        let in_properties = header(
            "    - name: c\n      type: component\n      properties: {image: f}\n      traits:\n        - type: spreadscaler\n          properties: {instances: 1, instances: 9}\n",
        );
        let err = Manifest::parse(&in_properties).unwrap_err().to_string();
        assert!(err.contains("duplicate"), "{err}");
    }
}
