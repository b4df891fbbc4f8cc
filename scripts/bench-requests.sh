#!/usr/bin/env bash
# Small-request rates of a release tusd-rs (file store, memory locker) on
# loopback, measured with wrk (installed from Debian if missing):
#   create-16k / create-64k  creation-with-upload POSTs, every request a new
#                            upload holding its whole body
#   head                     HEAD, each connection on its own upload
# Each round runs every workload against every binary in turn, each on a
# fresh upload directory; the first round of each binary checks what it
# stored. Prints, per round, requests/s and the server's CPU time and
# context switches per request (read from /proc: they separate two builds
# even on a machine too busy for the rates to), then the medians.
#
# Environment: ROUNDS (3), SECS (10 per run), CONNS (32), WRK_THREADS (1),
# BEFORE_BIN=/path/to/other/tusd-rs to compare with another build
# (git worktree add /tmp/before <rev> && cargo build --release -p tusd-rs
# --manifest-path /tmp/before/Cargo.toml), CURRENT_BIN to use a build of
# this tree made elsewhere instead of building it, EXTRA_ARGS for both.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scripts/install-wrk.sh
[[ -n "${CURRENT_BIN:-}" ]] || cargo build --release -q -p tusd-rs
rounds=${ROUNDS:-3} secs=${SECS:-10} conns=${CONNS:-32} threads=${WRK_THREADS:-1}
bins=("current=${CURRENT_BIN:-$root/target/release/tusd-rs}")
[[ -n "${BEFORE_BIN:-}" ]] && bins=("before=$BEFORE_BIN" "${bins[@]}")
work=$(mktemp -d "$root/target/bench-requests.XXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
echo "date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk -t$threads -c$conns -d${secs}s; rounds: $rounds"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start NAME BIN -> sets $pid $port $dir
start() {
    dir="$work/$1-$RANDOM"; mkdir -p "$dir"; port=$(free_port)
    # shellcheck disable=SC2086
    "$2" --host 127.0.0.1 --port "$port" --upload-dir "$dir" ${EXTRA_ARGS:-} >"$dir.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null -X OPTIONS "http://127.0.0.1:$port/files/" && return 0
        sleep 0.1
    done
    echo "server $1 did not start:" >&2; cat "$dir.log" >&2; exit 1
}

# The server's CPU time (clock ticks) and context switches (all threads) so
# far: per request, they tell builds apart even when the machine is too busy
# for the rates to.
server_cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
server_ctx() { cat /proc/"$pid"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n}'; }

run_wrk() { # SCRIPT -> "requests/s cpu-us/request switches/request"
    local cpu0 ctx0 out
    cpu0=$(server_cpu) ctx0=$(server_ctx)
    out=$(wrk -t"$threads" -c"$conns" -d"${secs}s" -s "$root/crates/tusd-rs/benches/wrk/$1" \
        "http://127.0.0.1:$port/files/")
    echo "$out" | awk -v cpu="$(( $(server_cpu) - cpu0 ))" -v ctx="$(( $(server_ctx) - ctx0 ))" \
        -v hz="$(getconf CLK_TCK)" '
        / requests in / {n = $1}
        /Requests\/sec/ {rate = $2}
        END {printf "%s %.1f %.2f\n", rate, cpu * 1e6 / hz / n, ctx / n}'
}

declare -A results cpus
checked=""
for round in $(seq "$rounds"); do
    for entry in "${bins[@]}"; do
        name=${entry%%=*} bin=${entry#*=}
        for kib in 16 64; do
            start "$name" "$bin"
            read -r rate cpu ctx < <(TUSD_WRK_BODY_KIB=$kib run_wrk create.lua)
            if [[ " $checked " != *" $name-$kib "* ]]; then
                # uploads created, and how many hold exactly their body (the
                # few the end of the run cut short may hold less)
                n=$(find "$dir" -maxdepth 1 -name '*.info' | wc -l)
                full=$(find "$dir" -maxdepth 1 -type f ! -name '*.*' -size "$((kib * 1024))"c | wc -l)
                echo "check $name create-${kib}k: $n uploads created, $full hold exactly their $kib KiB"
                checked="$checked $name-$kib"
            fi
            kill "$pid"; wait "$pid" 2>/dev/null || true
            results["$name create-${kib}k"]+="$rate "
            cpus["$name create-${kib}k"]+="$cpu "
            echo "round $round $name create-${kib}k: $rate req/s, server $cpu us CPU and $ctx context switches per request"
        done
        start "$name" "$bin"
        paths="$dir.paths"; : >"$paths"
        for _ in $(seq "$conns"); do
            curl -s -D - -o /dev/null -X POST -H 'Tus-Resumable: 1.0.0' -H 'Upload-Length: 10' \
                "http://127.0.0.1:$port/files/" | awk 'tolower($1)=="location:" {print $2}' \
                | tr -d '\r' | sed -E 's#^https?://[^/]+##' >>"$paths"
        done
        [[ $(wc -l <"$paths") == "$conns" ]] || { echo "could not create uploads for HEAD" >&2; exit 1; }
        read -r rate cpu ctx < <(TUSD_WRK_PATHS=$paths run_wrk head.lua)
        kill "$pid"; wait "$pid" 2>/dev/null || true
        results["$name head"]+="$rate "
        cpus["$name head"]+="$cpu "
        echo "round $round $name head: $rate req/s, server $cpu us CPU and $ctx context switches per request"
    done
done
echo
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median requests/s, and median server CPU us per request:"
for key in "${!results[@]}"; do
    printf '%-22s %s   (rounds: %s)   cpu %s us   (rounds: %s)\n' "$key" \
        "$(echo "${results[$key]}" | median)" "${results[$key]}" \
        "$(echo "${cpus[$key]}" | median)" "${cpus[$key]}"
done | sort
