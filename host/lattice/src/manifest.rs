//! The OAM application manifest, in the format wadm reads (`core.oam.dev/v1beta1`).
//!
//! Trait properties stay as JSON values: every trait type has its own schema, owned by the
//! plugin that handles it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const OAM_VERSION: &str = "core.oam.dev/v1beta1";
pub const APPLICATION_KIND: &str = "Application";
pub const VERSION_ANNOTATION: &str = "version";
pub const DESCRIPTION_ANNOTATION: &str = "description";

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
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
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
    #[serde(default)]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trait {
    #[serde(rename = "type")]
    pub trait_type: String,
    #[serde(default)]
    pub properties: serde_json::Value,
}

impl Manifest {
    /// Parses a manifest from YAML or JSON text. Errors name the line and column.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        // JSON is (nearly) YAML, but serde_json gives better messages for JSON documents.
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') {
            return serde_json::from_str(text).map_err(|e| ManifestError::Syntax {
                message: strip_location(&e.to_string()),
                line: Some(e.line()),
                column: Some(e.column()),
            });
        }
        serde_yaml_ng::from_str(text).map_err(|e| {
            let location = e.location();
            ManifestError::Syntax {
                message: strip_location(&e.to_string()),
                line: location.as_ref().map(|l| l.line()),
                column: location.as_ref().map(|l| l.column()),
            }
        })
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
