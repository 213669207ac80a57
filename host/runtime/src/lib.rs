//! The trellis plugin runtime.
//!
//! It loads the scaler, placement, validator and rollout plugins of a folder (WebAssembly
//! components of the `trellis:plugin` WIT package), checks what each exports and which contract
//! version it was built for, and calls them each in a fresh sandbox with a deadline and a
//! memory cap. It knows nothing of NATS or manifests: the controller hands it a
//! [`LatticeSnapshot`] and a context, and gets commands and a status back, or a [`CallError`]
//! that names the plugin and the fault.

pub mod bindings;
mod compat;
mod engine;
mod error;
pub mod output;
pub mod placement;
mod plugin;
mod registry;
mod sandbox;
mod snapshot;
mod view;

pub use engine::{DEFAULT_DEADLINE, DEFAULT_MEMORY, MAX_MEMORY};
pub use error::{CallError, Fault, LoadError};
pub use placement::{Placements, Shortlist};
pub use plugin::{
    Contract, Plugin, PluginKind, PluginSummary, CONTRACT_VERSION, CONTRACT_VERSIONS,
};
pub use registry::{PluginSet, Runtime, RuntimeConfig};
pub use sandbox::Limits;
pub use snapshot::{
    host_matches, ComponentEntry, DocumentError, Health, HostDirectory, HostEntry, HostVitals,
    LatticeDocument, LatticeHandle, LatticeSnapshot, LinkEntry, ProviderEntry, Resources, Traffic,
    TrafficEntry, Vitals, DOCUMENT_FORMAT, MAX_DOCUMENT_BYTES,
};
