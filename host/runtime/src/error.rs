//! What goes wrong with plugins, in words an operator can act on.

use std::path::PathBuf;

/// Why a plugin file was not loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read plugin {file}: {reason}")]
    Read { file: PathBuf, reason: String },
    #[error("plugin {file} is not a valid WebAssembly component: {reason}. Build it as its project says (Rust: `cargo build --target wasm32-wasip2 --release`; JavaScript: componentize-js; Python: componentize-py)")]
    Compile { file: PathBuf, reason: String },
    #[error("plugin {file} exports no trellis world (it exports: {exports}). A plugin must export one of trellis:plugin/scaler-api, placement-api or validator-api, of contract version {supported}")]
    NoKnownWorld {
        file: PathBuf,
        exports: String,
        supported: String,
    },
    #[error("plugin {file} was built for trellis:plugin@{found}, but this controller supports contract versions {supported}. Rebuild it against a compatible trellis-sdk")]
    IncompatibleVersion {
        file: PathBuf,
        found: String,
        supported: String,
    },
    #[error("plugin {file} cannot be instantiated: {reason}")]
    Instantiate { file: PathBuf, reason: String },
    #[error("plugin {file} failed in describe(): {fault}")]
    Describe { file: PathBuf, fault: Fault },
    #[error("plugin {file} provides placement policy `{policy}`, which {other} already provides. Remove one of the two files")]
    DuplicatePolicy {
        file: PathBuf,
        policy: String,
        other: PathBuf,
    },
    #[error("plugin {file} provides rollout strategy `{strategy}`, which {other} already provides. Remove one of the two files")]
    DuplicateStrategy {
        file: PathBuf,
        strategy: String,
        other: PathBuf,
    },
    #[error("plugin {file} claims trait type `{trait_type}`, which {other} already handles. Remove one of the two files")]
    DuplicateTraitType {
        file: PathBuf,
        trait_type: String,
        other: PathBuf,
    },
}

/// Why one plugin call failed. The call fails; the controller carries on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Fault {
    #[error("trapped: {0}")]
    Trap(String),
    #[error("exceeded its deadline of {0:?} (an endless loop?)")]
    Timeout(std::time::Duration),
    #[error("exceeded its memory limit of {} MiB", .0 >> 20)]
    MemoryLimit(usize),
    #[error("returned output that makes no sense: {0}")]
    InvalidOutput(String),
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
}

impl Fault {
    /// A short name for metrics and tables.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Trap(_) => "trap",
            Fault::Timeout(_) => "timeout",
            Fault::MemoryLimit(_) => "memory",
            Fault::InvalidOutput(_) => "invalid-output",
            Fault::Instantiate(_) => "instantiate",
        }
    }
}

/// A failed call, naming the plugin.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin {plugin} {fault}")]
pub struct CallError {
    pub plugin: String,
    pub fault: Fault,
}
