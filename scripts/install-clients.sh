#!/usr/bin/env bash
# Installs the third-party tus clients that crates/tusd-rs/tests/clients.rs
# drives, idempotently:
#   - tus-js-client (pinned in tests/clients/js/package-lock.json) with
#     `npm ci` into tests/clients/js/node_modules (gitignored); Debian's
#     nodejs and npm first if node or npm is missing;
#   - tuspy (pinned in tests/clients/python/requirements.txt) with pip into a
#     venv at <repo>/.venv (gitignored); Debian's python3-venv first if
#     python3 cannot make a venv with pip;
#   - grpcio and grpcio-tools (pinned in crates/tusd-rs/tests/hooks/requirements.txt)
#     into the same venv, for the gRPC hook receiver of the hook tests.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
js="$root/tests/clients/js"
py_reqs="$root/tests/clients/python/requirements.txt"
venv="$root/.venv"

apt_updated=
apt_install() {
    echo "install-clients: apt-get install $*"
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "$apt_updated" ]; then
        apt-get update -qq
        apt_updated=1
    fi
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- node: tus-js-client ---------------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
fi
echo "install-clients: node $(node --version), npm $(npm --version)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 18 ]; then
    echo "install-clients: tus-js-client 4 needs node >= 18, this is $(node --version)" >&2
    exit 1
fi

# npm ci wipes and reinstalls node_modules; skip it when the installed tree
# came from this very lock file.
stamp="$js/node_modules/.install-clients.sha256"
want="$(sha256sum "$js/package-lock.json" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d "$js/node_modules/tus-js-client" ]; then
    echo "install-clients: tests/clients/js/node_modules is up to date"
else
    echo "install-clients: npm ci in tests/clients/js"
    (cd "$js" && npm ci --no-audit --no-fund)
    echo "$want" >"$stamp"
fi
echo "install-clients: tus-js-client $(cd "$js" && node -p 'require("tus-js-client/package.json").version')"

# --- python: tuspy ---------------------------------------------------------
if ! command -v python3 >/dev/null 2>&1; then
    apt_install python3 python3-venv
fi
if [ ! -x "$venv/bin/python" ]; then
    # Debian ships the venv module without ensurepip unless python3-venv is in.
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        apt_install python3-venv
    fi
    echo "install-clients: python venv at $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
fi
echo "install-clients: pip install -r tests/clients/python/requirements.txt"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$py_reqs"
echo "install-clients: tuspy $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("tuspy"))')"

# --- python: grpcio for the gRPC hook receiver (crates/tusd-rs/tests/hooks_grpc.rs)
hooks_reqs="$root/crates/tusd-rs/tests/hooks/requirements.txt"
echo "install-clients: pip install -r crates/tusd-rs/tests/hooks/requirements.txt"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$hooks_reqs"
echo "install-clients: grpcio $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("grpcio"))')"
