#!/usr/bin/env bash
# Installs protoc and the well-known .proto files (Debian's protobuf-compiler
# and libprotobuf-dev), which the etcd-client crate's build script needs to
# compile etcd's API. Idempotent; says what it installs.
set -euo pipefail
need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || need+=(libprotobuf-dev)
if [ "${#need[@]}" -gt 0 ]; then
    echo "install-protoc: apt-get install ${need[*]} (needed to build the etcd client)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
