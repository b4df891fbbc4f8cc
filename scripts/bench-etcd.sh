#!/usr/bin/env bash
# Benchmarks etcd3locker against etcd 3.4 and etcd 3.5, each started by the
# benchmark itself on loopback (see crates/etcd3locker/examples/bench.rs).
# Prints one Markdown table per version, for docs/benchmarks.md.
# BENCH_SECS (default 6) sets the seconds per table cell.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/install-etcd.sh >&2
# shellcheck source=/dev/null
source .tools/etcd.env

cargo build --release -p etcd3locker --example bench >&2
for version in 34 35; do
    etcd_var="ETCD${version}_BIN"
    echo
    ETCD_BIN="${!etcd_var}" target/release/examples/bench
done
