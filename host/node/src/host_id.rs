//! Host ids shaped like wasmCloud's; the generator lives in `trellis-lattice` so that simulated
//! hosts (`trellis-sim`) get the same shape.

pub(crate) use trellis_lattice::host_id::generate;
