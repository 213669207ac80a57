#!/usr/bin/env bash
# Installs what trellis needs and is missing: nats-server (Debian package) and the
# wasm32-wasip2 Rust target. Safe to run again: it only installs what is absent.
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v nats-server >/dev/null 2>&1; then
    echo "setup: installing nats-server (Debian package)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
fi

# The dashboard's browser test (host/http/tests/browser.rs) drives a headless Chromium.
if ! command -v chromium >/dev/null 2>&1; then
    echo "setup: installing chromium (Debian package, for the dashboard's browser test)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "setup: adding the wasm32-wasip2 Rust target"
    rustup target add wasm32-wasip2
fi

echo "setup: nats-server $(nats-server --version | awk '{print $2}'), rust $(rustc --version | awk '{print $2}'), wasm32-wasip2 ready"
