#!/usr/bin/env bash
# Memory per in-flight upload (crates/tusd-rs/benches/memory_per_upload.rs):
# 200 uploads each send a 4 MiB burst in one PATCH and then trickle 16 bytes a
# second, and the server's VmRSS above its idle baseline is divided by 200.
#
# Compares, in the same run and in turn each round:
#   default   this build with its default flags (--max-read-buffer 64 KiB,
#             --memory-trim-interval 10s)
#   no-trim   the read buffer capped, memory not trimmed
#   uncapped  hyper's default read buffer, not trimmed (the old behaviour
#             on the new accept loop)
#   before    another binary, if BEFORE_BIN is set (e.g. a build from before
#             the connection limits: git worktree add /tmp/before <rev> &&
#             cargo build --release -p tusd-rs --manifest-path /tmp/before/Cargo.toml)
#
# Environment: ROUNDS (default 3), and the bench's own TUSD_MEM_* knobs
# (TUSD_MEM_UPLOADS, TUSD_MEM_BURST_KIB, TUSD_MEM_TRICKLE_SECS, ...).
# With STORE=s3 the servers use the S3 store on a Garage the bench starts
# (TUSD_TEST_STORE=s3; Garage from scripts/install-garage.sh), and only this
# build's default variant runs unless TUSD_MEM_VARIANTS says otherwise.
# CARGO_TARGET_DIR is honoured as by any cargo command, e.g. a shared release
# target directory whose dependencies are built already.
set -euo pipefail
cd "$(dirname "$0")/.."

variants="default=.;no-trim=. --memory-trim-interval 0;uncapped=. --max-read-buffer 417792 --memory-trim-interval 0"
if [[ -n "${BEFORE_BIN:-}" ]]; then
    variants="before=$BEFORE_BIN;$variants"
fi
echo "date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), $(nproc) cores"
if [[ "${STORE:-file}" == s3 ]]; then
    variants="s3=."
    export TUSD_TEST_STORE=s3
fi
TUSD_MEM_ROUNDS="${ROUNDS:-3}" TUSD_MEM_VARIANTS="${TUSD_MEM_VARIANTS:-$variants}" \
    cargo bench -p tusd-rs --bench memory_per_upload
