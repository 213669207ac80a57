#!/usr/bin/env bash
# The newcomer's first command: install what is missing, build everything (plugins, the echo
# example, the trellis binary), and start a local lattice with the echo app deployed.
# Then, in another shell:  curl http://127.0.0.1:8080/
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build-wasm.sh
echo "build: trellis"
cargo build -p trellis-cli
exec target/debug/trellis up --example echo "$@"
