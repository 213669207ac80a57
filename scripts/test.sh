#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds the wasm plugins, examples and test
# guests the tests load, runs every test of the workspace, then checks formatting and lints.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --test
scripts/build-wasm.sh
cargo test "$@"
cargo fmt --all --check
cargo clippy --all-targets -- -D warnings
