#!/usr/bin/env bash
# Runs tusd-rs on its embedded defaults: file store in ./data, memory locker,
# http://0.0.0.0:8080/files/. Extra arguments go to tusd-rs (see --help).
# Installs protoc first if it is missing (the etcd client in the binary needs
# it to build); everything else comes from Cargo.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install-protoc.sh"
cd "$root"
exec cargo run --release -p tusd-rs -- "$@"
