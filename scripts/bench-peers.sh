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
# (create-16k,create-64k,head,patch-1g,memory), FS (auto: each run's upload
# directory a fresh ext4 image on a loop device, else tmpfs, else a plain
# directory; or ext4, tmpfs, dir), FS_GIB (16: the sparse image's size).
# Loop mounts need root. Arguments go to the Python
# script (e.g. --json FILE; default target/bench-peers/results.json, which
# scripts/plot-peers.py draws).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-wrk.sh
if ! command -v mkfs.ext4 >/dev/null; then
    echo "installing e2fsprogs (mkfs.ext4) from Debian (apt-get)" >&2
    (apt-get install -y -q e2fsprogs || (apt-get update -q && apt-get install -y -q e2fsprogs)) >/dev/null
fi
scripts/install-peers.sh
cargo build --release -q -p tusd-rs
exec python3 scripts/bench-peers.py "$@"
