//! The wasmCloud control interface v1: subjects, commands, queries and replies.
//!
//! Field names follow `wasmcloud-control-interface` 2.x exactly, so its client can drive a
//! trellis node and the trellis controller can drive any host that speaks it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Subjects of the control interface for one lattice.
#[derive(Debug, Clone)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    pub fn new(lattice: &str) -> Self {
        Self {
            prefix: format!("wasmbus.ctl.v1.{lattice}"),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn host_ping(&self) -> String {
        format!("{}.host.ping", self.prefix)
    }
    pub fn host_get(&self, host: &str) -> String {
        format!("{}.host.get.{host}", self.prefix)
    }
    pub fn host_stop(&self, host: &str) -> String {
        format!("{}.host.stop.{host}", self.prefix)
    }
    pub fn component_scale(&self, host: &str) -> String {
        format!("{}.component.scale.{host}", self.prefix)
    }
    pub fn component_update(&self, host: &str) -> String {
        format!("{}.component.update.{host}", self.prefix)
    }
    pub fn provider_start(&self, host: &str) -> String {
        format!("{}.provider.start.{host}", self.prefix)
    }
    pub fn provider_stop(&self, host: &str) -> String {
        format!("{}.provider.stop.{host}", self.prefix)
    }
    pub fn link_put(&self) -> String {
        format!("{}.link.put", self.prefix)
    }
    pub fn link_del(&self) -> String {
        format!("{}.link.del", self.prefix)
    }
    pub fn link_get(&self) -> String {
        format!("{}.link.get", self.prefix)
    }
    pub fn config_put(&self, name: &str) -> String {
        format!("{}.config.put.{name}", self.prefix)
    }
    pub fn config_get(&self, name: &str) -> String {
        format!("{}.config.get.{name}", self.prefix)
    }
    pub fn config_del(&self, name: &str) -> String {
        format!("{}.config.del.{name}", self.prefix)
    }
    pub fn label_put(&self, host: &str) -> String {
        format!("{}.label.put.{host}", self.prefix)
    }
    pub fn label_del(&self, host: &str) -> String {
        format!("{}.label.del.{host}", self.prefix)
    }
    pub fn claims_get(&self) -> String {
        format!("{}.claims.get", self.prefix)
    }
    pub fn component_auction(&self) -> String {
        format!("{}.component.auction", self.prefix)
    }
    pub fn provider_auction(&self) -> String {
        format!("{}.provider.auction", self.prefix)
    }
}

/// The queue group in which hosts take lattice-wide writes (`link.*`, `config.*`), so that one
/// host handles each request.
pub fn host_queue_group(lattice: &str) -> String {
    format!("trellis-node.{lattice}")
}

/// The queue group in which hosts answer `claims.get`: the one wasmCloud hosts use, so that one
/// host of a mixed lattice answers.
pub fn claims_queue_group(lattice: &str) -> String {
    format!("wasmbus.ctl.v1.{lattice}.claims")
}

/// Uptime as hosts report it in heartbeats: `1d 1h 1m 1s`, leading zero units left out.
pub fn uptime_human(uptime: std::time::Duration) -> String {
    let secs = uptime.as_secs();
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m {s}s"),
    }
}

/// JetStream KV bucket holding named configs (the same bucket name wasmCloud hosts use).
pub fn config_bucket(lattice: &str) -> String {
    format!("CONFIGDATA_{lattice}")
}

/// JetStream KV bucket holding links (the same bucket name wasmCloud hosts use).
pub fn link_bucket(lattice: &str) -> String {
    format!("LATTICEDATA_{lattice}")
}

/// The reply to every control-interface request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CtlResponse<T> {
    pub success: bool,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<T>,
    /// trellis's addition: why, for a script, when something is missing or refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<crate::ErrorCode>,
}

impl<T> CtlResponse<T> {
    pub fn ok(response: T) -> Self {
        Self {
            success: true,
            message: String::new(),
            response: Some(response),
            code: None,
        }
    }
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            success: false,
            message: message.into(),
            response: None,
            code: None,
        }
    }
    /// The same answer, carrying `code`.
    pub fn with_code(mut self, code: crate::ErrorCode) -> Self {
        self.code = Some(code);
        self
    }
}

impl CtlResponse<()> {
    pub fn success(message: impl Into<String>) -> Self {
        Self {
            success: true,
            message: message.into(),
            response: None,
            code: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleComponentCommand {
    #[serde(default)]
    pub component_ref: String,
    pub component_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, alias = "count", rename = "count")]
    pub max_instances: u32,
    #[serde(default)]
    pub host_id: String,
    #[serde(default)]
    pub config: Vec<String>,
    #[serde(default)]
    pub allow_update: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartProviderCommand {
    pub provider_id: String,
    #[serde(default)]
    pub provider_ref: String,
    #[serde(default)]
    pub host_id: String,
    #[serde(default)]
    pub config: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopProviderCommand {
    #[serde(default)]
    pub host_id: String,
    #[serde(default, alias = "provider_ref")]
    pub provider_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopHostCommand {
    #[serde(default)]
    pub host_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

fn default_link_name() -> String {
    "default".to_string()
}

/// A link definition, as stored and as sent with `link.put`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Link {
    pub source_id: String,
    pub target: String,
    #[serde(default = "default_link_name")]
    pub name: String,
    pub wit_namespace: String,
    pub wit_package: String,
    pub interfaces: Vec<String>,
    #[serde(default)]
    pub source_config: Vec<String>,
    #[serde(default)]
    pub target_config: Vec<String>,
}

impl Link {
    /// The key a link is stored under: one link per source, name and WIT package.
    pub fn key(&self) -> String {
        link_key(
            &self.source_id,
            &self.name,
            &self.wit_namespace,
            &self.wit_package,
        )
    }
}

pub fn link_key(source_id: &str, name: &str, namespace: &str, package: &str) -> String {
    format!("{source_id}.{name}.{namespace}.{package}")
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteLinkRequest {
    pub source_id: String,
    #[serde(default = "default_link_name")]
    pub name: String,
    pub wit_namespace: String,
    pub wit_package: String,
}

/// Answer to `host.ping`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Host {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctl_host: Option<String>,
    #[serde(default)]
    pub friendly_name: String,
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub js_domain: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub lattice: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_human: Option<String>,
    #[serde(default)]
    pub uptime_seconds: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// CPU and memory as of the host's last heartbeat (trellis nodes; wasmCloud's tools
    /// ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<HostResources>,
}

/// Answer to `host.get.{host}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostInventory {
    #[serde(alias = "actors")]
    pub components: Vec<ComponentDescription>,
    pub providers: Vec<ProviderDescription>,
    #[serde(default)]
    pub host_id: String,
    #[serde(default)]
    pub friendly_name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub uptime_human: String,
    #[serde(default)]
    pub uptime_seconds: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentDescription {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub image_ref: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub revision: i32,
    #[serde(default)]
    pub max_instances: u32,
    /// The component's requests on this host over the last seconds (trellis nodes; a field
    /// wasmCloud's tools ignore). Absent when nothing was asked of it lately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<ComponentTraffic>,
}

/// One component's requests on one host over a recent window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentTraffic {
    /// Requests being served or waiting for an instance now.
    #[serde(default)]
    pub in_flight: u32,
    #[serde(default)]
    pub requests_per_second: f64,
    /// Median and 99th percentile of the time to an answer, in milliseconds.
    #[serde(default)]
    pub p50_ms: f64,
    #[serde(default)]
    pub p99_ms: f64,
    /// The share of requests answered with a server error (5xx), 0–1.
    #[serde(default)]
    pub error_rate: f64,
    /// How many seconds the figures cover.
    #[serde(default)]
    pub window_seconds: u32,
    /// Requests answered in that window (0 from hosts that do not count them: then
    /// `requests_per_second × window_seconds` is the estimate). Exact, where the rate of a
    /// component younger than the window is over the time it has run.
    #[serde(default)]
    pub requests: u64,
}

/// What a host has and uses (trellis nodes report it in heartbeats; wasmCloud's tools ignore
/// it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostResources {
    /// CPUs this process may use.
    #[serde(default)]
    pub cpus: u32,
    /// The share of the machine's CPU time used, 0–1, since the previous heartbeat.
    #[serde(default)]
    pub cpu_use: f64,
    /// The share of the machine's CPU time the host's own process used, 0–1, over the same
    /// interval: what its components cost, where several hosts share a machine.
    #[serde(default)]
    pub process_cpu_use: f64,
    #[serde(default)]
    pub memory_total_bytes: u64,
    /// Memory available for new work without swapping (Linux's `MemAvailable`).
    #[serde(default)]
    pub memory_available_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderDescription {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub revision: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLabel {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLabelIdentifier {
    pub key: String,
}

/// `component.update.{host}`: run another image for a component, keeping its instance count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateComponentCommand {
    #[serde(default)]
    pub component_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub host_id: String,
    #[serde(default)]
    pub new_component_ref: String,
}

/// `component.auction`: which hosts could run this component.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentAuctionRequest {
    #[serde(default)]
    pub component_ref: String,
    pub component_id: String,
    /// Labels a bidding host must carry, each with exactly this value.
    pub constraints: BTreeMap<String, String>,
}

/// A host's bid in a `component.auction`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentAuctionAck {
    #[serde(default)]
    pub component_ref: String,
    #[serde(default)]
    pub component_id: String,
    #[serde(default)]
    pub host_id: String,
    #[serde(default)]
    pub constraints: BTreeMap<String, String>,
}

/// `provider.auction`: which hosts could run this provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderAuctionRequest {
    #[serde(default)]
    pub provider_ref: String,
    pub provider_id: String,
    /// Labels a bidding host must carry, each with exactly this value.
    pub constraints: BTreeMap<String, String>,
}

/// A host's bid in a `provider.auction`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderAuctionAck {
    #[serde(default)]
    pub host_id: String,
    #[serde(default)]
    pub provider_ref: String,
    #[serde(default)]
    pub provider_id: String,
    #[serde(default)]
    pub constraints: BTreeMap<String, String>,
}

/// One entry of the answer to `claims.get`: a component's or provider's embedded JWT claims,
/// flattened (`sub`, `iss`, `name`, `caps`, …).
pub type StoredClaims = BTreeMap<String, String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_command_uses_count_on_the_wire() {
        let cmd = ScaleComponentCommand {
            component_id: "c".into(),
            max_instances: 3,
            ..Default::default()
        };
        let json = serde_json::to_value(&cmd).unwrap();
        assert_eq!(json["count"], 3);
        assert!(json.get("max_instances").is_none());
    }

    #[test]
    fn uptime_reads_like_wasmcloud() {
        use std::time::Duration;
        assert_eq!(uptime_human(Duration::from_secs(5)), "5s");
        assert_eq!(uptime_human(Duration::from_secs(65)), "1m 5s");
        assert_eq!(uptime_human(Duration::from_secs(3_726)), "1h 2m 6s");
        assert_eq!(uptime_human(Duration::from_secs(90_061)), "1d 1h 1m 1s");
    }

    /// The field names `wasmcloud-control-interface` 2.4 reads and writes.
    #[test]
    fn auction_and_update_shapes_are_wasmclouds() {
        let request: ComponentAuctionRequest = serde_json::from_str(
            r#"{"component_ref":"file:///echo.wasm","component_id":"echo","constraints":{"region":"east"}}"#,
        )
        .unwrap();
        let ack = ComponentAuctionAck {
            component_ref: request.component_ref,
            component_id: request.component_id,
            host_id: "NHOST".into(),
            constraints: request.constraints,
        };
        assert_eq!(
            serde_json::to_value(&ack).unwrap(),
            serde_json::json!({"component_ref": "file:///echo.wasm", "component_id": "echo",
                "host_id": "NHOST", "constraints": {"region": "east"}})
        );
        let request: ProviderAuctionRequest = serde_json::from_str(
            r#"{"provider_ref":"builtin:http-server","provider_id":"http","constraints":{}}"#,
        )
        .unwrap();
        let ack = ProviderAuctionAck {
            host_id: "NHOST".into(),
            provider_ref: request.provider_ref,
            provider_id: request.provider_id,
            constraints: request.constraints,
        };
        assert_eq!(
            serde_json::to_value(&ack).unwrap(),
            serde_json::json!({"host_id": "NHOST", "provider_ref": "builtin:http-server",
                "provider_id": "http", "constraints": {}})
        );
        let update: UpdateComponentCommand = serde_json::from_str(
            r#"{"component_id":"echo","host_id":"NHOST","new_component_ref":"file:///v2.wasm"}"#,
        )
        .unwrap();
        assert_eq!(update.new_component_ref, "file:///v2.wasm");
        assert_eq!(update.annotations, None);
    }

    #[test]
    fn link_name_defaults_to_default() {
        let link: Link = serde_json::from_str(
            r#"{"source_id":"a","target":"b","wit_namespace":"wasi","wit_package":"http","interfaces":["incoming-handler"]}"#,
        )
        .unwrap();
        assert_eq!(link.name, "default");
        assert_eq!(link.key(), "a.default.wasi.http");
    }
}
