#!/usr/bin/env bash
# Installs what crates/tusd-rs/tests/browser.rs drives, idempotently, and says
# what it installs:
#   - Debian's chromium and chromium-driver (/usr/bin/chromium,
#     /usr/bin/chromedriver): the browser comes from apt, never from a
#     download at test time;
#   - Uppy and tus-js-client for the pages in examples/browser/ (pinned in
#     examples/browser/package-lock.json) with `npm ci` into
#     examples/browser/node_modules (gitignored), skipped when the installed
#     tree came from this very lock file (npm may warn that a dependency
#     of Uppy wants a newer node: that is for building Uppy from source; the
#     pages load its prebuilt bundle);
#   - Selenium (pinned in crates/tusd-rs/tests/browser/requirements.txt) into
#     the venv at <repo>/.venv that scripts/install-clients.sh makes (run
#     that first).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pages="$root/examples/browser"
reqs="$root/crates/tusd-rs/tests/browser/requirements.txt"
venv="$root/.venv"

# --- chromium + chromedriver (Debian) --------------------------------------
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "install-browser: apt-get install chromium chromium-driver (headless browser for the browser tests)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
echo "install-browser: $(/usr/bin/chromium --version 2>/dev/null | head -1), $(/usr/bin/chromedriver --version | cut -d' ' -f1-2)"

# --- Uppy and tus-js-client for the example pages (npm) --------------------
if ! command -v npm >/dev/null 2>&1; then
    echo "install-browser: npm is missing; run scripts/install-clients.sh first" >&2
    exit 1
fi
stamp="$pages/node_modules/.install-browser.sha256"
want="$(sha256sum "$pages/package-lock.json" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d "$pages/node_modules/uppy" ]; then
    echo "install-browser: examples/browser/node_modules is up to date"
else
    echo "install-browser: npm ci in examples/browser (uppy, tus-js-client)"
    (cd "$pages" && npm ci --no-audit --no-fund)
    echo "$want" >"$stamp"
fi
echo "install-browser: uppy $(cd "$pages" && node -p 'require("uppy/package.json").version'), tus-js-client $(cd "$pages" && node -p 'require("tus-js-client/package.json").version')"

# --- Selenium into the project's venv (PyPI) -------------------------------
if [ ! -x "$venv/bin/python" ]; then
    echo "install-browser: $venv is missing; run scripts/install-clients.sh first" >&2
    exit 1
fi
echo "install-browser: pip install -r crates/tusd-rs/tests/browser/requirements.txt"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs"
echo "install-browser: selenium $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("selenium"))')"
