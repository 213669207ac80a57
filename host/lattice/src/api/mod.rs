//! The controller API: wadm's subjects and JSON shapes (as `wadm-types` 0.8 defines them), plus
//! trellis's extensions on subjects of their own.

use serde::{Deserialize, Serialize};

use crate::Manifest;

mod rollout;
mod status;
mod subjects;
mod vitals;

pub use rollout::*;
pub use status::*;
pub use subjects::*;
pub use vitals::*;

/// One plugin as `trellis plugin list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginEntry {
    pub name: String,
    pub version: String,
    pub kind: String,
    pub file: String,
    pub sha256: String,
    pub trait_types: Vec<String>,
    pub description: String,
    /// The plugin contract version it was built against (`0.1`, `0.2`); empty from older
    /// controllers.
    #[serde(default)]
    pub contract: String,
    pub calls: u64,
    /// Failed calls by kind of fault (trap, timeout, memory, invalid-output, instantiate).
    pub failures: std::collections::BTreeMap<String, u64>,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
}

/// A plugin file that is not in service (or whose newest version is not), and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginProblem {
    pub file: String,
    pub error: String,
}

/// How bad a validation finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

/// One finding about a manifest, from the controller or a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Where in the manifest, e.g. `spec.components[1].traits[0].properties.instances`;
    /// empty for the manifest as a whole.
    pub path: String,
    pub message: String,
    /// What to do about it; empty when there is nothing to add.
    #[serde(default)]
    pub hint: String,
    /// Who found it: `controller` or the plugin's name.
    #[serde(default)]
    pub source: String,
}

impl std::fmt::Display for Diagnostic {
    /// `error: spec.components[0].name: message (hint: …)`, one line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        write!(f, "{severity}: ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if !self.hint.is_empty() {
            write!(f, " (hint: {})", self.hint)?;
        }
        Ok(())
    }
}

/// The answer to `trellis.api.{lattice}.model.validate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidateResponse {
    /// No finding is an error: `put` would accept the manifest.
    pub valid: bool,
    pub diagnostics: Vec<Diagnostic>,
}

/// The answer to `trellis.api.{lattice}.plugin.list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginListResponse {
    pub plugin_dir: String,
    pub plugins: Vec<PluginEntry>,
    pub problems: Vec<PluginProblem>,
}

/// The body of `model.list` (trellis's addition: wadm's clients send none, and get every
/// app). Apps come sorted by name; a page is `limit` of them from `offset` on, and a page
/// shorter than `limit` is the last.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListModelsRequest {
    #[serde(default)]
    pub offset: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetModelRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetModelResponse {
    pub result: GetResult,
    /// Why it failed, for scripts (trellis's addition; see [`crate::code`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<crate::ErrorCode>,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GetResult {
    Error,
    Success,
    NotFound,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutModelResponse {
    pub result: PutResult,
    /// Why it failed, for scripts (trellis's addition; see [`crate::code`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<crate::ErrorCode>,
    #[serde(default)]
    pub total_versions: usize,
    #[serde(default)]
    pub current_version: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub name: String,
    /// Older versions the put pruned to keep within the store's bounds, oldest first
    /// (trellis's addition).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pruned: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PutResult {
    Error,
    Created,
    NewVersion,
}

/// One app in the answer to `model.list` (a bare JSON array of these, as wadm-client reads it)
/// and to `model.get` without a name ([`ListModelsResponse`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelSummary {
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub deployed_version: Option<String>,
    #[serde(default)]
    pub detailed_status: Status,
    /// Kept for older clients, which require it.
    pub status: StatusType,
    pub status_message: Option<String>,
}

impl ModelSummary {
    /// The summary of an app with `status`, as wadm makes it: the kept `status` field says
    /// `undeployed` for `waiting`, which older clients cannot read.
    pub fn new(
        name: String,
        version: String,
        description: Option<String>,
        deployed_version: Option<String>,
        status: Status,
    ) -> Self {
        let legacy = match status.info.status_type {
            StatusType::Waiting => StatusType::Undeployed,
            other => other,
        };
        Self {
            name,
            version,
            description,
            deployed_version,
            status: legacy,
            status_message: Some(status.info.message.clone()),
            detailed_status: status,
        }
    }
}

/// The answer to `model.get` without a name, as wadm 0.21 gives it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListModelsResponse {
    pub result: GetResult,
    /// Why it failed, for scripts (trellis's addition; see [`crate::code`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<crate::ErrorCode>,
    #[serde(default)]
    pub message: String,
    pub models: Vec<ModelSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionResponse {
    pub result: GetResult,
    /// Why it failed, for scripts (trellis's addition; see [`crate::code`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<crate::ErrorCode>,
    #[serde(default)]
    pub message: String,
    pub versions: Vec<VersionInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: String,
    pub deployed: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteModelRequest {
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteModelResponse {
    pub result: DeleteResult,
    /// Why it failed, for scripts (trellis's addition; see [`crate::code`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<crate::ErrorCode>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub undeploy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeleteResult {
    Deleted,
    Error,
    Noop,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployModelRequest {
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployModelResponse {
    pub result: DeployResult,
    /// Why it failed, for scripts (trellis's addition; see [`crate::code`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<crate::ErrorCode>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployResult {
    Error,
    Acknowledged,
    NotFound,
}

/// The body of `model.undeploy.{name}`. wadm's is empty (reserved); trellis reads one optional
/// field, so an empty body or wadm-client's request undeploys the wadm way.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UndeployModelRequest {
    /// Stop managing the app but leave what it runs in place (no cleanup commands). Default
    /// false: undeploy removes everything the app started.
    #[serde(default)]
    pub non_destructive: bool,
}

/// The body of `trellis.api.{lattice}.model.plan.{name}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// The version to plan; the latest stored one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The answer to `trellis.api.{lattice}.model.plan.{name}`: what deploying `version` would do
/// now, given the lattice as this controller sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanResponse {
    pub result: GetResult,
    /// Why it failed, for scripts (trellis's addition; see [`crate::code`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<crate::ErrorCode>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub name: String,
    /// The version planned.
    #[serde(default)]
    pub version: String,
    /// The commands a deploy would issue now, in issue order: those of the planned version's
    /// scalers, then cleanup of scalers the deployed version has and the planned one drops.
    #[serde(default)]
    pub commands: Vec<PlannedCommand>,
    /// Each scaler's status after the commands (what `status` would show while they run).
    #[serde(default)]
    pub scalers: Vec<ScalerStatus>,
}

/// One control-interface request a deploy would send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedCommand {
    /// The scaler asking for it (its status id, e.g. `spreadscaler-echo-0`).
    pub scaler: String,
    /// The control-interface subject, e.g. `wasmbus.ctl.v1.default.component.scale.N…`.
    pub subject: String,
    /// The request body, exactly as it would be sent.
    pub body: serde_json::Value,
    /// Whether the same command is already in flight or backing off, so a deploy would not
    /// send it again right now.
    #[serde(default)]
    pub held: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_parse_from_subject_tails() {
        assert_eq!(Operation::parse("put"), Some(Operation::Put));
        assert_eq!(
            Operation::parse("deploy.echo"),
            Some(Operation::Deploy("echo".into()))
        );
        assert_eq!(Operation::parse("deploy"), None);
        assert_eq!(Operation::parse("bogus.x"), None);
        // wadm 0.21 lists on `model.get` without a name.
        assert_eq!(Operation::parse("get"), Some(Operation::GetAll));
        assert_eq!(
            Operation::parse("get.echo"),
            Some(Operation::Get("echo".into()))
        );
    }

    #[test]
    fn subjects_follow_the_api_prefix_and_nothing_else_does() {
        let default = Subjects::new("l");
        assert_eq!(default.get_all(), "wadm.api.l.model.get");
        assert_eq!(default.model_wildcard(), "wadm.api.l.model.>");
        let custom = Subjects::with_prefix("acme.wadm", "l");
        assert_eq!(custom.put(), "acme.wadm.l.model.put");
        assert_eq!(custom.get_all(), "acme.wadm.l.model.get");
        assert_eq!(custom.deploy("echo"), "acme.wadm.l.model.deploy.echo");
        assert_eq!(custom.model_wildcard(), "acme.wadm.l.model.>");
        // As in wadm: statuses and events stay put; so do trellis's extensions.
        assert_eq!(custom.status_updates("echo"), "wadm.status.l.echo");
        assert_eq!(
            custom.manifest_event(MANIFEST_PUBLISHED),
            "wadm.evt.l.manifest_published"
        );
        assert_eq!(custom.plan("echo"), default.plan("echo"));
        assert_eq!(custom.validate(), default.validate());
    }

    #[test]
    fn api_prefixes_are_trimmed_like_wadm_and_wildcards_refused() {
        assert_eq!(api_prefix(" .acme.wadm. ").unwrap(), "acme.wadm");
        assert_eq!(api_prefix(DEFAULT_API_PREFIX).unwrap(), "wadm.api");
        for bad in [
            "",
            " . ",
            "a..b",
            "wadm.*",
            "wadm.>",
            "wa dm.api",
            "trellis.api",
            "wasmbus.ctl.v1",
            "$JS.API",
            "_INBOX",
        ] {
            assert!(api_prefix(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn summaries_keep_the_legacy_status_readable_by_old_clients() {
        let waiting = Status::new(StatusInfo::new(StatusType::Waiting, "no hosts"), vec![]);
        let s = ModelSummary::new("a".into(), "v1".into(), None, Some("v1".into()), waiting);
        assert_eq!(s.status, StatusType::Undeployed);
        assert_eq!(s.detailed_status.info.status_type, StatusType::Waiting);
        assert_eq!(s.status_message.as_deref(), Some("no hosts"));
        let v = serde_json::to_value(ListModelsResponse {
            result: GetResult::Success,
            code: None,
            message: "m".into(),
            models: vec![s],
        })
        .unwrap();
        assert_eq!(v["result"], "success");
        assert_eq!(v["models"][0]["status"], "undeployed");
        assert!(v.get("code").is_none());
    }

    #[test]
    fn aggregate_follows_wadm_precedence() {
        use StatusType::*;
        assert_eq!(
            [Deployed, Deployed].into_iter().sum::<StatusType>(),
            Deployed
        );
        assert_eq!(
            [Deployed, Reconciling].into_iter().sum::<StatusType>(),
            Reconciling
        );
        assert_eq!(
            [Reconciling, Failed].into_iter().sum::<StatusType>(),
            Failed
        );
        assert_eq!(
            [Waiting, Reconciling].into_iter().sum::<StatusType>(),
            Waiting
        );
        assert_eq!(std::iter::empty().sum::<StatusType>(), Undeployed);
    }

    #[test]
    fn status_serialises_like_wadm() {
        let s = Status::aggregate(vec![ScalerStatus {
            id: "x".into(),
            kind: "spreadscaler".into(),
            name: "echo".into(),
            info: StatusInfo::new(StatusType::Failed, "no plugin"),
        }]);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["status"]["type"], "failed");
        assert_eq!(v["scalers"][0]["status"]["message"], "no plugin");
    }
}
