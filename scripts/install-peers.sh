#!/usr/bin/env bash
# Installs the peer servers scripts/bench-peers.sh compares tusd-rs with,
# idempotently, and writes their paths to .tools/peers.env:
#   RUSTUS_BIN   rustus from crates.io (cargo install --locked), built once
#                (about 6 CPU minutes) and cached outside the checkout:
#                ~/.cache/tusd-rs/rustus-$RUSTUS_VERSION/bin/rustus
#   TUS_NODE_DIR @tus/server + @tus/file-store from npm, the versions pinned
#                by scripts/peers/tus-node/package-lock.json (npm ci), with
#                the launcher server.mjs; cached in
#                ~/.cache/tusd-rs/tus-node-<hash of the lockfile>
# A second run finds both and returns at once.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_root="${TUSD_CACHE_DIR:-$HOME/.cache/tusd-rs}"

rustus_version="${RUSTUS_VERSION:-0.5.10}"
rustus_cache="$cache_root/rustus-$rustus_version"
rustus_bin="$rustus_cache/bin/rustus"
if [ ! -x "$rustus_bin" ]; then
    echo "install-peers: building rustus $rustus_version with cargo install (once; cached in $rustus_cache)" >&2
    rm -rf "$rustus_cache.partial"
    cargo install rustus --version "$rustus_version" --locked --root "$rustus_cache.partial" --quiet
    rm -rf "$rustus_cache"
    mv "$rustus_cache.partial" "$rustus_cache"
fi

source_dir="$root/scripts/peers/tus-node"
hash=$(cat "$source_dir/package-lock.json" "$source_dir/server.mjs" | sha256sum | cut -c1-12)
node_dir="$cache_root/tus-node-$hash"
if [ ! -f "$node_dir/.installed" ]; then
    command -v npm >/dev/null || { echo "install-peers: npm is needed for @tus/server (apt-get install nodejs npm; node >= 20.19)" >&2; exit 1; }
    echo "install-peers: installing @tus/server and @tus/file-store with npm ci (cached in $node_dir)" >&2
    rm -rf "$node_dir"
    mkdir -p "$node_dir"
    cp "$source_dir/package.json" "$source_dir/package-lock.json" "$source_dir/server.mjs" "$node_dir/"
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    touch "$node_dir/.installed"
fi

mkdir -p "$root/.tools"
printf 'RUSTUS_BIN=%s\nTUS_NODE_DIR=%s\n' "$rustus_bin" "$node_dir" >"$root/.tools/peers.env"
"$rustus_bin" --version >/dev/null
node --version >/dev/null
