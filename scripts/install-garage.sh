#!/usr/bin/env bash
# Installs Garage, the S3-compatible object store the S3 store's tests run
# against, idempotently. Garage comes from crates.io and takes about 15
# minutes to build on 2 cores, so it is built once and cached outside the
# checkout, keyed by version, where a fresh clone (CI's) finds it again:
#   ~/.cache/tusd-rs/garage-$GARAGE_VERSION/bin/garage
# Writes its path to .tools/garage.env (GARAGE_BIN), which the tests source.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${GARAGE_VERSION:-2.5.0}"
cache="${TUSD_CACHE_DIR:-$HOME/.cache/tusd-rs}/garage-$version"
bin="$cache/bin/garage"
if [ ! -x "$bin" ]; then
    echo "install-garage: building Garage $version with cargo install (about 15 minutes once; cached in $cache)"
    cargo install garage --version "$version" --locked --root "$cache.partial" --quiet
    rm -rf "$cache"
    mv "$cache.partial" "$cache"
fi
mkdir -p "$root/.tools"
echo "GARAGE_BIN=$bin" >"$root/.tools/garage.env"
"$bin" --version >/dev/null 2>&1 || "$bin" --help >/dev/null
