#!/usr/bin/env bash
# The newcomer's first command: install what is missing, build everything (plugins, the echo
# example, the trellis binary), and start a local lattice with the echo app deployed.
# Then, in another shell:  curl http://127.0.0.1:8080/
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build-wasm.sh
# A release build: plugin calls run ~15x faster than in a debug build, for ~3 more minutes of
# the first build (docs/decisions/0016-up-runs-a-release-build.md).
echo "build: trellis (release; the first build takes several minutes)"
cargo build --release -p trellis-cli
exec target/release/trellis up --example echo "$@"
