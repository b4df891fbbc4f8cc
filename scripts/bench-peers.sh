#!/usr/bin/env bash
# tusd-rs next to its peers, rustus and @tus/server (with @tus/file-store),
# on this machine, with the same clients, in interleaved rounds, every
# stored byte checked; prints one table with each peer's ratio to tusd-rs
# (see scripts/bench-peers.py for the workloads). Installs what it needs:
# wrk from Debian, the peers with scripts/install-peers.sh (cached in
# ~/.cache/tusd-rs), and builds tusd-rs in release mode.
#
# Environment: ROUNDS (3), SECS (10 per wrk run), CONNS (32), WRK_THREADS (1),
# PATCH_MIB (1024), MEM_UPLOADS (200), MEM_BURST_KIB (4096),
# MEM_TRICKLE_SECS (20), DURABILITIES (none,create,complete: the tusd-rs
# --durability levels run where syncing costs), WORKLOADS
# (create-16k,create-64k,head,patch-1g,memory). Arguments go to the Python
# script (e.g. --json FILE; default target/bench-peers/results.json, which
# scripts/plot-peers.py draws).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-wrk.sh
scripts/install-peers.sh
cargo build --release -q -p tusd-rs
exec python3 scripts/bench-peers.py "$@"
