//! trellis-sdk: what a trellis plugin author depends on.
//!
//! A scaler is a type implementing [`Scaler`] plus one line, [`export_scaler!`]. Its logic sees
//! plain Rust types ([`ScalerContext`], [`Command`], [`Status`]) and queries the lattice through
//! the [`Lattice`] trait, so it is unit-tested natively with [`testing::TestLattice`] and plain
//! `cargo test`. Built for `wasm32-wasip2`, the macro adds the glue to the WIT contract
//! (`wit/plugin.wit`, `trellis:plugin@0.2.0`): bindings are generated here, once, so plugins
//! never run bindgen themselves. The SDK holds no policy: the helpers ([`labels`], [`spread`],
//! [`diff`]) are the arithmetic every scaler needs, the decisions stay in the plugins.
//!
//! ```no_run
//! use trellis_sdk::{Command, Lattice, PluginInfo, Reconciled, Scaler, ScalerContext};
//!
//! struct Nothing;
//!
//! impl Scaler for Nothing {
//!     fn describe() -> PluginInfo {
//!         PluginInfo {
//!             name: "nothing".into(),
//!             version: "0.1.0".into(),
//!             trait_types: vec!["nothing".into()],
//!             description: "Asks for nothing".into(),
//!         }
//!     }
//!     fn reconcile(_: &ScalerContext, _: &dyn Lattice) -> Reconciled {
//!         Reconciled::deployed()
//!     }
//!     fn cleanup(_: &ScalerContext, _: &dyn Lattice) -> Vec<Command> {
//!         Vec::new()
//!     }
//! }
//!
//! trellis_sdk::export_scaler!(Nothing);
//! ```

#![deny(missing_docs)]

// Lets the generated bindings name this crate by the path plugins use.
extern crate self as trellis_sdk;

pub mod config;
pub mod diff;
pub mod image;
pub mod labels;
mod lattice;
// The plugin build's allocator (installed below) and `memcmp`: compiled natively too, for
// their unit tests.
#[cfg_attr(
    not(all(target_arch = "wasm32", feature = "fast-alloc")),
    allow(dead_code)
)]
mod heap;
mod log;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod memcmp;
mod placement;
pub mod rollout;
mod scaler;
pub mod spread;
pub mod suggest;
pub mod testing;
mod types;
mod validator;
mod vitals;
// WASI answered inside the plugin, so that plugin components import none.
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod wasi;

pub use lattice::Lattice;
pub use log::{log, Level};
pub use placement::{HostScore, Placement, Verdict};
pub use rollout::{Rollout, RolloutContext, RolloutDecision, RolloutPhase, RolloutTarget};
pub use scaler::{Reconciled, Scaler};
pub use types::{
    label_map, Command, ComponentCount, ComponentInstance, ComponentKind, ComponentSpec,
    Diagnostic, Host, Labels, Link, PlacementRequest, PluginInfo, PropertyError, ProviderInstance,
    ScalerContext, Severity, Status,
};
pub use validator::{path, Validator};
pub use vitals::{Health, HostVitals, Traffic};

/// The WIT package version this SDK speaks; the controller refuses plugins of an incompatible one.
pub const WIT_VERSION: &str = "0.2.0";

/// Bindings generated from `wit/plugin.wit`, one module per world. Plugins use them through
/// the export macros; reach in only for what the SDK does not wrap.
// Generated code, documented in the WIT: `wit_bindgen::generate!` copies `wit/plugin.wit`'s doc
// comments onto the items it makes, and cannot take ours for the fields and cases the WIT leaves
// undocumented, so `missing_docs` is allowed here.
#[cfg(target_arch = "wasm32")]
#[allow(missing_docs)]
pub mod bindings {
    /// The `scaler` world: imports `lattice`, `placement-ranking` and `log`, exports
    /// `scaler-api`. Its `trellis::plugin` types are the ones every world shares.
    pub mod scaler {
        wit_bindgen::generate!({
            path: "wit",
            world: "scaler",
            pub_export_macro: true,
            default_bindings_module: "trellis_sdk::bindings::scaler",
        });
    }

    // The other worlds share the scaler world's types, so one set of conversions serves all.
    /// The `placement` world: imports `lattice` and `log`, exports `placement-api`.
    pub mod placement {
        wit_bindgen::generate!({
            path: "wit",
            world: "placement",
            pub_export_macro: true,
            default_bindings_module: "trellis_sdk::bindings::placement",
            with: {
                "trellis:plugin/types@0.2.0": crate::bindings::scaler::trellis::plugin::types,
                "trellis:plugin/lattice@0.2.0": crate::bindings::scaler::trellis::plugin::lattice,
                "trellis:plugin/log@0.2.0": crate::bindings::scaler::trellis::plugin::log,
            },
        });
    }

    /// The `rollout` world: imports only `log`, exports `rollout-api`.
    pub mod rollout {
        wit_bindgen::generate!({
            path: "wit",
            world: "rollout",
            pub_export_macro: true,
            default_bindings_module: "trellis_sdk::bindings::rollout",
            with: {
                "trellis:plugin/types@0.2.0": crate::bindings::scaler::trellis::plugin::types,
                "trellis:plugin/log@0.2.0": crate::bindings::scaler::trellis::plugin::log,
            },
        });
    }

    /// The `validator` world: imports only `log`, exports `validator-api`.
    pub mod validator {
        wit_bindgen::generate!({
            path: "wit",
            world: "validator",
            pub_export_macro: true,
            default_bindings_module: "trellis_sdk::bindings::validator",
            with: {
                "trellis:plugin/types@0.2.0": crate::bindings::scaler::trellis::plugin::types,
                "trellis:plugin/log@0.2.0": crate::bindings::scaler::trellis::plugin::log,
            },
        });
    }
}

#[cfg(target_arch = "wasm32")]
mod export;
#[cfg(target_arch = "wasm32")]
mod rollout_export;

/// Plugins are short-lived single-threaded instances: see `heap.rs` for why they get their own
/// allocator, and the `fast-alloc` feature to turn it off.
#[cfg(all(
    target_arch = "wasm32",
    not(target_feature = "atomics"),
    feature = "fast-alloc"
))]
#[global_allocator]
static ALLOCATOR: heap::SizeClasses = heap::SizeClasses::new();

#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use crate::export::{PlacementExport, ScalerExport, ValidatorExport};
    #[cfg(target_arch = "wasm32")]
    pub use crate::rollout_export::RolloutExport;
}

/// Exports a [`Scaler`] impl as the plugin's `scaler-api`.
///
/// Natively the macro only checks that the type implements [`Scaler`], so the plugin crate
/// still builds for its unit tests; for `wasm32` it emits the component exports.
#[macro_export]
macro_rules! export_scaler {
    ($scaler:ty) => {
        const _: () = {
            fn assert_scaler<T: $crate::Scaler>() {}
            let _ = assert_scaler::<$scaler>;
        };

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type TrellisScalerExport = $crate::__private::ScalerExport<$scaler>;
            $crate::bindings::scaler::export!(
                TrellisScalerExport with_types_in $crate::bindings::scaler
            );
        };
    };
}

/// Exports a [`Placement`] impl as the plugin's `placement-api`.
#[macro_export]
macro_rules! export_placement {
    ($placement:ty) => {
        const _: () = {
            fn assert_placement<T: $crate::Placement>() {}
            let _ = assert_placement::<$placement>;
        };

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type TrellisPlacementExport = $crate::__private::PlacementExport<$placement>;
            $crate::bindings::placement::export!(
                TrellisPlacementExport with_types_in $crate::bindings::placement
            );
        };
    };
}

/// Exports a [`Validator`] impl as the plugin's `validator-api`.
#[macro_export]
macro_rules! export_validator {
    ($validator:ty) => {
        const _: () = {
            fn assert_validator<T: $crate::Validator>() {}
            let _ = assert_validator::<$validator>;
        };

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type TrellisValidatorExport = $crate::__private::ValidatorExport<$validator>;
            $crate::bindings::validator::export!(
                TrellisValidatorExport with_types_in $crate::bindings::validator
            );
        };
    };
}

/// Exports a [`Rollout`] impl as the plugin's `rollout-api`.
#[macro_export]
macro_rules! export_rollout {
    ($rollout:ty) => {
        const _: () = {
            fn assert_rollout<T: $crate::Rollout>() {}
            let _ = assert_rollout::<$rollout>;
        };

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type TrellisRolloutExport = $crate::__private::RolloutExport<$rollout>;
            $crate::bindings::rollout::export!(
                TrellisRolloutExport with_types_in $crate::bindings::rollout
            );
        };
    };
}
