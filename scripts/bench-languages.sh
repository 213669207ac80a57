#!/usr/bin/env bash
# What a plugin's language costs: the same scaler policy (the scaler `trellis plugin new` makes:
# a component's instances on the best-ranked host carrying some labels) written in Rust,
# JavaScript and Python, each built from its template, run by `trellis plugin run` (the
# controller's runtime and planning, release build) on a lattice of 100 hosts:
#   - scale-up: nothing runs yet; the call ranks hosts (through the built-in placement plugins)
#     and asks for the instances;
#   - steady: the instances run as wanted; the call reads and decides nothing changes;
# and each plugin's load time, compiled (no cache) and from the compile cache. Prints a table;
# Rust is the baseline measured in the same run.
#   scripts/bench-languages.sh [CALLS]      (default 500 calls per case)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
calls=${1:-500}

echo "build: trellis (release)" >&2
cargo build --release --quiet -p trellis-cli
trellis=$root/target/release/trellis
[ -f build/plugins/placement.wasm ] || scripts/build-wasm.sh >&2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/none" "$work/cache"

# The two lattices: 100 hosts, half of them labelled zone=edge.
python3 - "$work" <<'EOF'
import json, sys
work = sys.argv[1]
hosts = [{"id": f"N{i:03}", "labels": {"zone": "edge" if i % 2 == 0 else "core"},
          "vitals": {"cpus": 4, "cpu_use": 0.1 + (i % 7) / 20, "memory_total_bytes": 8 << 30,
                     "memory_available_bytes": (4 + i % 3) << 30}} for i in range(100)]
for lang in ["rust", "js", "python"]:
    for case, components in [("scale-up", []), ("steady", [
            {"host_id": "N042", "component_id": f"bench-bench{lang}", "image": "file:///bench/web.wasm", "count": 2}])]:
        doc = {"format": "trellis.lattice/v1", "hosts": hosts, "components": components}
        json.dump(doc, open(f"{work}/{case}-{lang}.json", "w"))
EOF

for lang in rust js python; do
    name=bench$lang
    echo "build: the $lang scaler" >&2
    sdk=()
    [ "$lang" = rust ] && sdk=(--sdk-path "$root/sdk")
    "$trellis" plugin new "$name" --kind scaler --lang "$lang" --dir "$work" "${sdk[@]}" >/dev/null
    cd "$work/$name"
    case $lang in
        rust)
            CARGO_TARGET_DIR=$work/target cargo build --quiet --target wasm32-wasip2 --release
            cp "$work/target/wasm32-wasip2/release/$name.wasm" "$work/$name.wasm" ;;
        js)
            npm install --silent --no-audit --no-fund >/dev/null
            npm run --silent build >/dev/null
            cp "dist/$name.wasm" "$work/$name.wasm" ;;
        python)
            python3 -m venv .venv
            .venv/bin/pip install --quiet -r requirements-dev.txt
            .venv/bin/python build.py >/dev/null
            cp "dist/$name.wasm" "$work/$name.wasm" ;;
    esac
    cd "$root"
    cat > "$work/$name.yaml" <<EOF
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: bench
  annotations:
    version: v1
spec:
  components:
    - name: bench$lang
      type: component
      properties:
        image: file:///bench/web.wasm
      traits:
        - type: $name
          properties:
            instances: 2
            requirements:
              zone: edge
EOF
    echo "measure: $lang" >&2
    run() { "$trellis" plugin run "$work/$name.wasm" --manifest "$work/$name.yaml" -o json "$@"; }
    # Load alone (no other plugins): compiled, then from a cache filled by the first load.
    run --state "$work/steady-$lang.json" --plugins "$work/none" --no-plugin-cache > "$work/$lang-cold.json"
    run --state "$work/steady-$lang.json" --plugins "$work/none" --plugin-cache "$work/cache" > /dev/null
    run --state "$work/steady-$lang.json" --plugins "$work/none" --plugin-cache "$work/cache" > "$work/$lang-warm.json"
    for case in scale-up steady; do
        run --state "$work/$case-$lang.json" --plugins build/plugins --plugin-cache "$work/cache" \
            --repeat "$calls" > "$work/$lang-$case.json"
    done
done

python3 - "$work" "$calls" <<'EOF'
import json, os, sys
work, calls = sys.argv[1], sys.argv[2]
def read(name):
    return json.load(open(f"{work}/{name}.json"))
rows = []
for lang, label in [("rust", "Rust"), ("js", "JavaScript"), ("python", "Python")]:
    up, steady = read(f"{lang}-scale-up"), read(f"{lang}-steady")
    assert up["commands"], f"{lang}: scale-up asked for nothing"
    assert not steady["commands"], f"{lang}: steady asked for something"
    rows.append((label, os.path.getsize(f"{work}/bench{lang}.wasm") / 2**20,
                 up["calls"]["p50_us"], up["calls"]["p99_us"],
                 steady["calls"]["p50_us"], steady["calls"]["p99_us"],
                 read(f"{lang}-cold")["load_ms"], read(f"{lang}-warm")["load_ms"]))
base = rows[0]
print(f"Per call ({calls} calls per case, 100 hosts) and load, release build:\n")
print("| language | .wasm | scale-up p50 | p99 | steady p50 | p99 | × Rust (steady p50) | load, compiled | load, cached |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r[0]} | {r[1]:.1f} MB | {r[2]} µs | {r[3]} µs | {r[4]} µs | {r[5]} µs | "
          f"{r[4] / base[4]:.0f}× | {r[6]:.0f} ms | {r[7]:.0f} ms |")
EOF
