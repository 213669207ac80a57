#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds the wasm plugins, examples and test
# guests the tests load, runs every test of the workspace, then checks formatting and lints.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --test
CURRENT_NATS="$(scripts/current-nats.sh --version)"
scripts/build-wasm.sh
# The end-to-end harness runs the `trellis` binary this workspace build makes (it would
# otherwise build its own, with other feature resolution, and recompile the CLI).
# A one-off build (CI, a clean clone) gains nothing from incremental artifacts, which would
# double the size of `target/`.
if [[ "${CI:-}" == "true" ]]; then export CARGO_INCREMENTAL=0; fi
export TRELLIS_BIN="${TRELLIS_BIN:-$(pwd)/target/debug/trellis}"
cargo test "$@"
# The end-to-end suite once more, against the current nats-server release (the PyPI wheel,
# fetched by setup.sh --test) besides the distribution's: both are supported.
TRELLIS_NATS_SERVER="$(pwd)/.trellis/tools/nats-server-$CURRENT_NATS" cargo test -p trellis-tests "$@"
cargo fmt --all --check
cargo clippy --all-targets -- -D warnings
