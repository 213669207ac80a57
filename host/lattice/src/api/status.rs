//! An app's status as the API answers and publishes it: the aggregate, one entry per scaler,
//! and how scaler statuses add up (wadm's precedence).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusResponse {
    pub result: StatusResult,
    /// Why it failed, for scripts (trellis's addition; see [`crate::code`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<crate::ErrorCode>,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusResult {
    Error,
    Ok,
    NotFound,
}

/// The status of an app: the aggregate and one entry per scaler.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    #[serde(rename = "status")]
    pub info: StatusInfo,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scalers: Vec<ScalerStatus>,
    /// Kept empty for older clients, which read it.
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub components: Vec<serde_json::Value>,
}

impl Status {
    pub fn new(info: StatusInfo, scalers: Vec<ScalerStatus>) -> Self {
        Self {
            info,
            scalers,
            version: String::new(),
            components: Vec::new(),
        }
    }

    /// The app's status from its scalers', the way wadm aggregates them.
    pub fn aggregate(scalers: Vec<ScalerStatus>) -> Self {
        let status_type = scalers.iter().map(|s| s.info.status_type).sum();
        let message = scalers
            .iter()
            .filter(|s| s.info.status_type != StatusType::Deployed && !s.info.message.is_empty())
            .map(|s| format!("{}: {}", s.name, s.info.message))
            .collect::<Vec<_>>()
            .join("; ");
        Self::new(
            StatusInfo {
                status_type,
                message,
            },
            scalers,
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalerStatus {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "status")]
    pub info: StatusInfo,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    #[serde(rename = "type")]
    pub status_type: StatusType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl StatusInfo {
    pub fn new(status_type: StatusType, message: impl Into<String>) -> Self {
        Self {
            status_type,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusType {
    Waiting,
    #[default]
    Undeployed,
    #[serde(alias = "compensating")]
    Reconciling,
    #[serde(alias = "ready")]
    Deployed,
    Failed,
    Unhealthy,
}

impl std::ops::Add for StatusType {
    type Output = Self;

    /// Failed beats undeployed beats waiting beats reconciling beats unhealthy beats deployed.
    fn add(self, rhs: Self) -> Self {
        use StatusType::*;
        if self == rhs {
            return self;
        }
        for dominant in [Failed, Undeployed, Waiting, Reconciling, Unhealthy] {
            if self == dominant || rhs == dominant {
                return dominant;
            }
        }
        Deployed
    }
}

impl std::iter::Sum for StatusType {
    fn sum<I: Iterator<Item = Self>>(mut iter: I) -> Self {
        let first = iter.next().unwrap_or_default();
        iter.fold(first, |a, b| a + b)
    }
}
