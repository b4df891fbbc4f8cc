#!/usr/bin/env bash
# Server CPU per GiB and context switches per GiB of one 1 GiB PATCH sent by
# curl on loopback, for one or more tusd-rs builds or settings, in
# interleaved rounds. CPU time and switches are read from /proc for the
# server process (all threads), so builds can be told apart even on a busy
# machine, where MiB/s cannot. Every upload is compared with its source.
#
#   scripts/bench-patch-cpu.sh 'name=/path/to/tusd-rs --extra --args' ...
#   (default: one variant, this tree's release build); ROUNDS (2), MIB (1024)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
rounds=${ROUNDS:-2} mib=${MIB:-1024}
variants=("$@")
if [[ ${#variants[@]} -eq 0 ]]; then
    cargo build --release -q -p tusd-rs
    variants=("current=$root/target/release/tusd-rs")
fi
mkdir -p target
work=$(mktemp -d "$root/target/bench-patch-cpu.XXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
head -c "$((mib << 20))" /dev/urandom >"$work/source"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $mib MiB, rounds $rounds"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
server_cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
server_ctx() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n}'; }

for round in $(seq "$rounds"); do
    for variant in "${variants[@]}"; do
        name=${variant%%=*} cmd=${variant#*=}
        dir="$work/$name-$round"; mkdir -p "$dir"; port=$(free_port)
        # shellcheck disable=SC2086
        $cmd --host 127.0.0.1 --port "$port" --upload-dir "$dir" >"$dir.log" 2>&1 &
        pid=$!
        for _ in $(seq 100); do
            curl -s -o /dev/null -X OPTIONS "http://127.0.0.1:$port/files/" && break
            sleep 0.1
        done
        url=$(curl -s -D - -o /dev/null -X POST -H 'Tus-Resumable: 1.0.0' \
            -H "Upload-Length: $((mib << 20))" "http://127.0.0.1:$port/files/" \
            | awk 'tolower($1)=="location:" {print $2}' | tr -d '\r')
        cpu0=$(server_cpu "$pid") ctx0=$(server_ctx "$pid") t0=$(date +%s.%N)
        status=$(curl -s -o /dev/null -w '%{http_code}' -X PATCH -H 'Tus-Resumable: 1.0.0' \
            -H 'Upload-Offset: 0' -H 'Content-Type: application/offset+octet-stream' \
            -H 'Expect:' -T "$work/source" "$url")
        t1=$(date +%s.%N) cpu1=$(server_cpu "$pid") ctx1=$(server_ctx "$pid")
        same=$(cmp -s "$work/source" "$dir/${url##*/}" && echo "bytes identical" || echo "BYTES DIFFER")
        kill "$pid"; wait "$pid" 2>/dev/null || true
        awk -v n="$name" -v r="$round" -v s="$status" -v t0="$t0" -v t1="$t1" \
            -v c="$((cpu1 - cpu0))" -v x="$((ctx1 - ctx0))" -v hz="$(getconf CLK_TCK)" \
            -v mib="$mib" -v same="$same" \
            'BEGIN {printf "round %s %-12s %s  %6.0f MiB/s  %.2f CPU s/GiB  %7.0f switches/GiB  %s\n",
                    r, n, s, mib / (t1 - t0), c / hz / (mib / 1024), x / (mib / 1024), same}'
        rm -rf "$dir"
    done
done
