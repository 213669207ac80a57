#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds the wasm plugins and examples the
# end-to-end tests deploy, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build-wasm.sh
cargo test "$@"
