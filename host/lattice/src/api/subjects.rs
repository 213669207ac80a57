//! The API's subjects (wadm's, under a configurable prefix, and trellis's extensions), the
//! operations they name, and wadm's manifest events.

use serde::{Deserialize, Serialize};

/// The subject prefix of wadm's API, as wadm's `--api-prefix` defaults to it.
pub const DEFAULT_API_PREFIX: &str = "wadm.api";

/// `prefix` as the API uses it, or why it cannot be one. Surrounding spaces and dots are
/// dropped, as wadm does; what is left must be one or more subject tokens without wildcards.
pub fn api_prefix(prefix: &str) -> Result<String, String> {
    let trimmed = prefix.trim().trim_matches('.');
    if trimmed.is_empty() {
        return Err("the API prefix is empty: give subject tokens such as `wadm.api`".into());
    }
    let bad = |token: &str| {
        token.is_empty()
            || token.contains(['*', '>'])
            || token.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    if trimmed.split('.').any(bad) {
        return Err(format!(
            "`{prefix}` is not an API prefix: it must be dot-separated subject tokens, without \
             spaces, empty tokens or the wildcards `*` and `>` (e.g. `wadm.api`)"
        ));
    }
    // Subjects others answer: API requests there would reach trellis's extensions, the
    // hosts' control interface, NATS's own APIs or replies.
    let first = trimmed.split('.').next().unwrap_or_default();
    if trimmed == "trellis.api" || first == "wasmbus" || first == "_INBOX" || first.starts_with('$')
    {
        return Err(format!(
            "`{prefix}` is not an API prefix: its subjects belong to others (`trellis.api` to \
             trellis's extensions, `wasmbus` to hosts, `$…` to NATS, `_INBOX` to replies)"
        ));
    }
    Ok(trimmed.to_string())
}

/// Subjects of the controller API for one lattice.
#[derive(Debug, Clone)]
pub struct Subjects {
    /// wadm's API prefix: `wadm.api` unless the controller was given another.
    prefix: String,
    lattice: String,
}

impl Subjects {
    /// The subjects under the default prefix, `wadm.api`.
    pub fn new(lattice: &str) -> Self {
        Self::with_prefix(DEFAULT_API_PREFIX, lattice)
    }
    /// The subjects under another API prefix (checked by [`api_prefix`]). Only the wadm
    /// API's subjects move; trellis's extensions (`trellis.api.…`), statuses
    /// (`wadm.status.…`) and events (`wadm.evt.…`) stay where they are, as wadm's do.
    pub fn with_prefix(prefix: &str, lattice: &str) -> Self {
        Self {
            prefix: prefix.trim().trim_matches('.').into(),
            lattice: lattice.into(),
        }
    }
    /// `{prefix}.{lattice}.model.>`: everything the API server listens to.
    pub fn model_wildcard(&self) -> String {
        format!("{}.>", self.model_prefix())
    }
    /// `{prefix}.{lattice}.model`, by default `wadm.api.{lattice}.model`.
    pub fn model_prefix(&self) -> String {
        format!("{}.{}.model", self.prefix, self.lattice)
    }
    pub fn put(&self) -> String {
        format!("{}.put", self.model_prefix())
    }
    /// `model.list`: every app as a bare JSON array (what wadm-client 0.10 asks; deprecated in
    /// wadm since `model.get` without a name, [`Subjects::get_all`], answers it wrapped).
    pub fn list(&self) -> String {
        format!("{}.list", self.model_prefix())
    }
    /// `model.get` without a name: every app, as [`ListModelsResponse`] (wadm 0.21's list).
    pub fn get_all(&self) -> String {
        format!("{}.get", self.model_prefix())
    }
    /// The subject that names `op`: the inverse of [`Operation::parse`] on its tail.
    pub fn operation(&self, op: &Operation) -> String {
        match op {
            Operation::Put => self.put(),
            Operation::List => self.list(),
            Operation::GetAll => self.get_all(),
            Operation::Get(n) => self.get(n),
            Operation::Versions(n) => self.versions(n),
            Operation::Del(n) => self.del(n),
            Operation::Deploy(n) => self.deploy(n),
            Operation::Undeploy(n) => self.undeploy(n),
            Operation::Status(n) => self.status(n),
            Operation::History(n) => self.history(n),
        }
    }
    pub fn get(&self, name: &str) -> String {
        format!("{}.get.{name}", self.model_prefix())
    }
    pub fn versions(&self, name: &str) -> String {
        format!("{}.versions.{name}", self.model_prefix())
    }
    pub fn del(&self, name: &str) -> String {
        format!("{}.del.{name}", self.model_prefix())
    }
    pub fn deploy(&self, name: &str) -> String {
        format!("{}.deploy.{name}", self.model_prefix())
    }
    pub fn undeploy(&self, name: &str) -> String {
        format!("{}.undeploy.{name}", self.model_prefix())
    }
    pub fn status(&self, name: &str) -> String {
        format!("{}.status.{name}", self.model_prefix())
    }
    pub fn history(&self, name: &str) -> String {
        format!("{}.history.{name}", self.model_prefix())
    }
    /// `trellis.api.{lattice}.plugin.list`: the plugins a controller has loaded (an extension).
    pub fn plugin_list(&self) -> String {
        format!("trellis.api.{}.plugin.list", self.lattice)
    }
    /// `trellis.api.{lattice}.model.validate`: check a manifest without storing it (an
    /// extension; the payload is the manifest, YAML or JSON).
    pub fn validate(&self) -> String {
        format!("trellis.api.{}.model.validate", self.lattice)
    }
    /// `trellis.api.{lattice}.hosts.get`: the hosts with their health, resources and, when
    /// asked, history (an extension; request [`super::HostsRequest`], answer
    /// [`super::HostsResponse`]).
    pub fn hosts(&self) -> String {
        format!("trellis.api.{}.hosts.get", self.lattice)
    }
    /// `trellis.api.{lattice}.snapshot.get`: the lattice as a plugin would see it now (an
    /// extension; empty request, answer [`super::SnapshotResponse`]).
    pub fn snapshot(&self) -> String {
        format!("trellis.api.{}.snapshot.get", self.lattice)
    }
    /// `trellis.api.{lattice}.model.plan.{name}`: the commands deploying a version would issue
    /// now, computed by the same plugin calls as a deploy, without issuing them (an extension;
    /// request [`PlanRequest`], answer [`PlanResponse`]).
    pub fn plan(&self, name: &str) -> String {
        format!("trellis.api.{}.model.plan.{name}", self.lattice)
    }
    /// `trellis.api.{lattice}.model.rollback.{name}`: deploy the version that was deployed before
    /// the current one (an extension; empty request, answer [`DeployModelResponse`]).
    pub fn rollback(&self, name: &str) -> String {
        format!("trellis.api.{}.model.rollback.{name}", self.lattice)
    }
    /// `trellis.api.{lattice}.rollout.{action}.{name}`: an app's rollout, got, promoted past
    /// its current step or aborted (an extension; answer [`super::RolloutResponse`]).
    pub fn rollout(&self, action: super::RolloutAction, name: &str) -> String {
        format!(
            "trellis.api.{}.rollout.{}.{name}",
            self.lattice,
            action.word()
        )
    }
    /// `trellis.api.{lattice}.rollout.`: what every rollout subject starts with.
    pub fn rollout_prefix(&self) -> String {
        format!("trellis.api.{}.rollout.", self.lattice)
    }
    /// The extension subjects the controllers answer: `trellis.api.{lattice}.model.{plan,rollback}.*`,
    /// `rollout.*.*`, `hosts.get` and `snapshot.get`.
    pub fn extension_wildcards(&self) -> [String; 5] {
        [
            self.plan("*"),
            self.rollback("*"),
            self.hosts(),
            self.snapshot(),
            format!("{}*.*", self.rollout_prefix()),
        ]
    }
    /// Where the status of an app is published on every change.
    pub fn status_updates(&self, name: &str) -> String {
        format!("wadm.status.{}.{name}", self.lattice)
    }
    /// `wadm.evt.{lattice}.{kind}`: where wadm's manifest events ([`MANIFEST_PUBLISHED`],
    /// [`MANIFEST_UNPUBLISHED`]) go, whatever the API prefix.
    pub fn manifest_event(&self, kind: &str) -> String {
        format!("wadm.evt.{}.{kind}", self.lattice)
    }
}

/// The event of an app deployed (its version's manifest is the data), as wadm 0.21 sends it:
/// a CloudEvent of type `com.wadm.manifest_published` on `wadm.evt.{lattice}.manifest_published`.
pub const MANIFEST_PUBLISHED: &str = "manifest_published";
/// The event of an app undeployed (or deleted), data [`ManifestUnpublished`].
pub const MANIFEST_UNPUBLISHED: &str = "manifest_unpublished";
/// What wadm puts before an event's kind in its CloudEvents' `type`.
pub const MANIFEST_EVENT_TYPE_PREFIX: &str = "com.wadm.";
/// The `source` of wadm's CloudEvents.
pub const MANIFEST_EVENT_SOURCE: &str = "wadm";

/// The data of a [`MANIFEST_UNPUBLISHED`] event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestUnpublished {
    pub name: String,
}

/// The API operation a subject names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Put,
    /// `model.list`: the deprecated list, a bare array.
    List,
    /// `model.get` without a name: the list wadm 0.21 answers, wrapped.
    GetAll,
    Get(String),
    Versions(String),
    Del(String),
    Deploy(String),
    Undeploy(String),
    Status(String),
    History(String),
}

impl Operation {
    /// Parses the tail of a subject after `{prefix}.{lattice}.model.`.
    pub fn parse(tail: &str) -> Option<Self> {
        let (op, name) = match tail.split_once('.') {
            Some((op, name)) => (op, Some(name.to_string())),
            None => (tail, None),
        };
        Some(match (op, name) {
            ("put", None) => Self::Put,
            ("list", None) => Self::List,
            ("get", None) => Self::GetAll,
            ("get", Some(n)) => Self::Get(n),
            ("versions", Some(n)) => Self::Versions(n),
            ("del", Some(n)) => Self::Del(n),
            ("deploy", Some(n)) => Self::Deploy(n),
            ("undeploy", Some(n)) => Self::Undeploy(n),
            ("status", Some(n)) => Self::Status(n),
            ("history", Some(n)) => Self::History(n),
            _ => return None,
        })
    }
}
