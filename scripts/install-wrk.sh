#!/usr/bin/env bash
# Installs wrk (the HTTP load generator the request benchmarks use) from
# Debian if it is missing, and says so.
set -euo pipefail
if ! command -v wrk >/dev/null; then
    echo "installing wrk from Debian (apt-get)" >&2
    (apt-get install -y -q wrk || (apt-get update -q && apt-get install -y -q wrk)) >/dev/null
fi
