//! Host bindings generated from `wit/` (the contract this runtime implements), one module per
//! world, and from `host/runtime/wit/v0.1.0/` (the earlier contract, whose plugins keep
//! working: [`v0_1`]). The scaler world owns the shared interfaces; the other worlds reuse its
//! types so one Rust type means one WIT type.

pub mod scaler {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "scaler",
        with: {
            "trellis:plugin/lattice.lattice-view": crate::snapshot::LatticeHandle,
        },
        imports: { default: trappable },
    });
}

pub mod placement {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "placement",
        with: {
            "trellis:plugin/types": crate::bindings::scaler::trellis::plugin::types,
            "trellis:plugin/lattice": crate::bindings::scaler::trellis::plugin::lattice,
            "trellis:plugin/log": crate::bindings::scaler::trellis::plugin::log,
        },
        imports: { default: trappable },
    });
}

pub mod validator {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "validator",
        with: {
            "trellis:plugin/types": crate::bindings::scaler::trellis::plugin::types,
            "trellis:plugin/log": crate::bindings::scaler::trellis::plugin::log,
        },
        imports: { default: trappable },
    });
}

pub mod rollout {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "rollout",
        with: {
            "trellis:plugin/types": crate::bindings::scaler::trellis::plugin::types,
            "trellis:plugin/log": crate::bindings::scaler::trellis::plugin::log,
        },
        imports: { default: trappable },
    });
}

/// Contract 0.1.0: its imports are defined beside 0.2.0's, so a plugin built against either
/// links. Its `types` are 0.2.0's (0.2.0 only added to them), and both versions' `lattice-view`
/// are the same host resource, so the runtime hands either the same values.
pub mod v0_1 {
    pub mod scaler {
        wasmtime::component::bindgen!({
            path: "wit/v0.1.0",
            world: "scaler",
            with: {
                "trellis:plugin/types": crate::bindings::scaler::trellis::plugin::types,
                "trellis:plugin/lattice.lattice-view": crate::snapshot::LatticeHandle,
            },
            imports: { default: trappable },
        });
    }

    pub mod placement {
        wasmtime::component::bindgen!({
            path: "wit/v0.1.0",
            world: "placement",
            with: {
                "trellis:plugin/types": crate::bindings::scaler::trellis::plugin::types,
                "trellis:plugin/lattice": crate::bindings::v0_1::scaler::trellis::plugin::lattice,
                "trellis:plugin/log": crate::bindings::v0_1::scaler::trellis::plugin::log,
            },
            imports: { default: trappable },
        });
    }

    pub mod validator {
        wasmtime::component::bindgen!({
            path: "wit/v0.1.0",
            world: "validator",
            with: {
                "trellis:plugin/types": crate::bindings::scaler::trellis::plugin::types,
                "trellis:plugin/log": crate::bindings::v0_1::scaler::trellis::plugin::log,
            },
            imports: { default: trappable },
        });
    }

    pub use scaler::exports::trellis::plugin::scaler_api::{ReconcileResult, ScalerContext};
}

pub use scaler::exports::trellis::plugin::scaler_api::{ReconcileResult, ScalerContext};
pub use scaler::trellis::plugin::types::{
    Command, ComponentCount, ComponentInstance, ComponentKind, ComponentSpec, CountRow, CountTable,
    DeleteLink, Diagnostic, HostCount, HostInfo, HostRow, HostTable, LabelRow, Link, Pair,
    PlacementRequest, PluginInfo, ProviderInstance, PutConfig, ScaleComponent, Severity, Span,
    StartProvider, Status, StopProvider,
};
