#!/usr/bin/env bash
# Turns scripts/bench-peers.sh's results into docs/benchmarks-peers.png:
# installs the pinned matplotlib (scripts/peers/plot-requirements.txt) into
# the project's .venv if missing, then runs scripts/plot-peers.py.
#   scripts/plot-peers.sh [RESULTS_JSON] [OUTPUT_PNG]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
requirements=scripts/peers/plot-requirements.txt
if ! .venv/bin/pip freeze 2>/dev/null | grep -qx "$(grep '^matplotlib==' "$requirements")"; then
    echo "plot-peers: installing $requirements into .venv" >&2
    .venv/bin/pip install -q -r "$requirements"
fi
exec .venv/bin/python scripts/plot-peers.py "$@"
