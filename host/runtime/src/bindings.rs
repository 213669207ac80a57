//! HostInfo bindings generated from `wit/`, one module per world. The scaler world owns the shared
//! interfaces; the other worlds reuse its types so one Rust type means one WIT type.

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

pub use scaler::exports::trellis::plugin::scaler_api::{ReconcileResult, ScalerContext};
pub use scaler::trellis::plugin::types::{
    Command, ComponentCount, ComponentInstance, ComponentKind, ComponentSpec, CountRow, CountTable,
    DeleteLink, Diagnostic, HostCount, HostInfo, HostRow, HostTable, LabelRow, Link, Pair,
    PlacementRequest, PluginInfo, ProviderInstance, PutConfig, ScaleComponent, Severity, Span,
    StartProvider, Status, StopProvider,
};
