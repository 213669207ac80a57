//! trellis-sdk: what a trellis plugin author depends on.
//!
//! A scaler is a type implementing [`Scaler`] plus one line, [`export_scaler!`]. Its logic sees
//! plain Rust types ([`ScalerContext`], [`Command`], [`Status`]) and queries the lattice through
//! the [`Lattice`] trait, so it is unit-tested natively with [`testing::TestLattice`] and plain
//! `cargo test`. Built for `wasm32-wasip2`, the macro adds the glue to the WIT contract
//! (`wit/plugin.wit`, `trellis:plugin@0.1.0`): bindings are generated here, once, so plugins
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

// Lets the generated bindings name this crate by the path plugins use.
extern crate self as trellis_sdk;

pub mod diff;
pub mod labels;
mod lattice;
mod log;
mod scaler;
pub mod spread;
pub mod testing;
mod types;

pub use lattice::Lattice;
pub use log::{log, Level};
pub use scaler::{Reconciled, Scaler};
pub use types::{
    label_map, Command, ComponentInstance, ComponentKind, ComponentSpec, Diagnostic, Host, Labels,
    Link, PlacementRequest, PluginInfo, PropertyError, ProviderInstance, ScalerContext, Severity,
    Status,
};

/// The WIT package version this SDK speaks; the controller refuses plugins of an incompatible one.
pub const WIT_VERSION: &str = "0.1.0";

/// Bindings generated from `wit/plugin.wit`, one module per world. Plugins use them through
/// the export macros; reach in only for what the SDK does not wrap.
#[cfg(target_arch = "wasm32")]
pub mod bindings {
    pub mod scaler {
        wit_bindgen::generate!({
            path: "../wit",
            world: "scaler",
            pub_export_macro: true,
            default_bindings_module: "trellis_sdk::bindings::scaler",
        });
    }
}

#[cfg(target_arch = "wasm32")]
mod export;

#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use crate::export::ScalerExport;
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
