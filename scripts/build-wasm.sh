#!/usr/bin/env bash
# Builds the wasm components of this repository for wasm32-wasip2 (profile `wasm`: release
# with LTO, see Cargo.toml) and copies them
# where trellis, the examples and the tests look for them:
#   build/plugins/{spreadscaler,daemonscaler,linkscaler,configscaler}.wasm  built-in scalers
#   build/plugins/placement.wasm, build/plugins/validator.wasm      built-in placement, validator
#   build/plugins/loadaware.wasm                                    built-in placement policy `load-aware`
#   build/plugins/autoscaler.wasm                                   built-in scaler `autoscaler`
#   build/plugins/{canary,bluegreen}.wasm                           built-in rollouts `canary`, `blue-green`
#   build/examples/echo.wasm                                        the echo example component
#   build/examples/failover.wasm                                    the example custom scaler plugin
#   build/examples/cpu-cap.wasm                                     the example placement policy
#   build/examples/latency-guard.wasm                               the example rollout plugin
#   build/examples/{kvcounter,pipeline-sensor,pipeline-infer,pipeline-store}.wasm  examples
#   build/fixtures/{name}.wasm                                      host/runtime/fixtures/{name}
#                                                                   (guests the runtime tests load)
#   build/fixtures/hostile.wasm                                     tests/components/hostile (the
#                                                                   sandbox end-to-end test's guest)
# Works from any folder. Extra arguments go to cargo (e.g. --locked, --offline).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target_dir="$(cargo metadata --format-version 1 --no-deps \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
target_dir="${target_dir:-$repo/target}"

fixtures=()
for dir in host/runtime/fixtures/*/; do
    [ -f "$dir/Cargo.toml" ] && fixtures+=("$(basename "$dir")")
done

# artifact (cargo's file name) → destination under the repository
copies=(
    "trellis_plugin_spreadscaler.wasm:build/plugins/spreadscaler.wasm"
    "trellis_plugin_linkscaler.wasm:build/plugins/linkscaler.wasm"
    "trellis_plugin_daemonscaler.wasm:build/plugins/daemonscaler.wasm"
    "trellis_plugin_configscaler.wasm:build/plugins/configscaler.wasm"
    "trellis_plugin_placement.wasm:build/plugins/placement.wasm"
    "trellis_plugin_loadaware.wasm:build/plugins/loadaware.wasm"
    "trellis_plugin_autoscaler.wasm:build/plugins/autoscaler.wasm"
    "trellis_plugin_validator.wasm:build/plugins/validator.wasm"
    "trellis_plugin_canary.wasm:build/plugins/canary.wasm"
    "trellis_plugin_bluegreen.wasm:build/plugins/bluegreen.wasm"
    "failover_scaler.wasm:build/examples/failover.wasm"
    "cpu_cap_placement.wasm:build/examples/cpu-cap.wasm"
    "latency_guard_rollout.wasm:build/examples/latency-guard.wasm"
    "echo.wasm:build/examples/echo.wasm"
    "kvcounter.wasm:build/examples/kvcounter.wasm"
    "pipeline_sensor.wasm:build/examples/pipeline-sensor.wasm"
    "pipeline_infer.wasm:build/examples/pipeline-infer.wasm"
    "pipeline_store.wasm:build/examples/pipeline-store.wasm"
    "hostile.wasm:build/fixtures/hostile.wasm"
)
packages=(-p trellis-plugin-spreadscaler -p trellis-plugin-linkscaler -p trellis-plugin-daemonscaler
    -p trellis-plugin-configscaler -p trellis-plugin-placement -p trellis-plugin-loadaware -p trellis-plugin-autoscaler -p trellis-plugin-validator -p trellis-plugin-canary -p trellis-plugin-bluegreen -p echo
    -p failover-scaler -p cpu-cap-placement -p latency-guard-rollout)
packages+=(-p kvcounter -p pipeline-sensor -p pipeline-infer -p pipeline-store)
packages+=(-p hostile)
for name in "${fixtures[@]}"; do
    packages+=(-p "fixture-$name")
    copies+=("fixture_${name//-/_}.wasm:build/fixtures/$name.wasm")
done

# One invocation, so cargo shares the dependency builds among all packages.
cargo build --target wasm32-wasip2 --profile wasm "${packages[@]}" "$@"

# The hot-reload test swaps `fixed` for a build that decides differently (FIXTURE_COUNT=2).
# It gets its own target folder so the two builds do not rebuild each other on every run.
variant_dir="$target_dir/fixture-variants"
if [[ " ${fixtures[*]} " == *" fixed "* ]]; then
    FIXTURE_COUNT=2 cargo build --target wasm32-wasip2 --profile wasm -p fixture-fixed \
        --target-dir "$variant_dir" "$@"
fi

install_component() { # artifact destination
    local artifact="$1" dest="$repo/$2" header
    # A component starts with `\0asm` then version 0x0d 0x00 and layer 0x01 0x00; a core
    # module has `01 00 00 00` there. rustc's wasm32-wasip2 output is already a component.
    header="$(od -An -tx1 -N8 "$artifact" | tr -d ' \n')"
    if [ "$header" != "0061736d0d000100" ]; then
        echo "build-wasm: $artifact is not a WebAssembly component (header $header)" >&2
        exit 1
    fi
    mkdir -p "$(dirname "$dest")"
    # Copy through a temporary name, then rename: a controller watching build/plugins never
    # sees a half-written plugin.
    cp "$artifact" "$dest.tmp"
    mv -f "$dest.tmp" "$dest"
    echo "build-wasm: $2 ($(wc -c <"$dest") bytes)"
}

for pair in "${copies[@]}"; do
    install_component "$target_dir/wasm32-wasip2/wasm/${pair%%:*}" "${pair#*:}"
done
if [[ " ${fixtures[*]} " == *" fixed "* ]]; then
    install_component "$variant_dir/wasm32-wasip2/wasm/fixture_fixed.wasm" build/fixtures/fixed-2.wasm
fi
