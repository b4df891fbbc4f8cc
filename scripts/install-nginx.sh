#!/usr/bin/env bash
# Installs nginx for crates/tusd-rs/tests/nginx.rs, which runs its own nginx
# processes (tusd_testsupport::Nginx) in front of tusd-rs nodes. Installs
# Debian's nginx-light (the nginx binary at /usr/sbin/nginx with the core
# modules; on releases without nginx-light, the nginx package) when no nginx
# is found at $NGINX_BIN, /usr/sbin/nginx or on PATH. Idempotent: says
# nothing when nginx is already there. The system nginx service is neither
# started nor needed: Debian's package starts it on install unless told not
# to, so a policy-rc.d forbids that for the duration of the install, and the
# service is stopped afterwards if it came up anyway.
set -euo pipefail

if [ -n "${NGINX_BIN:-}" ] && [ -x "$NGINX_BIN" ]; then exit 0; fi
if [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1; then exit 0; fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
pkg=nginx-light
if ! apt-cache show nginx-light >/dev/null 2>&1; then pkg=nginx; fi
echo "install-nginx: apt-get install $pkg (nginx for the tests behind a proxy; the system service is not started)"

# Keep the package's postinst from starting the service (invoke-rc.d honours
# policy-rc.d exit code 101: "action forbidden").
policy=/usr/sbin/policy-rc.d
own_policy=
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
fi
cleanup() { if [ -n "$own_policy" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
    systemctl stop nginx || true
    systemctl disable --quiet nginx 2>/dev/null || true
fi
echo "install-nginx: $(/usr/sbin/nginx -v 2>&1)"
