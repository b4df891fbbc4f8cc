#!/usr/bin/env bash
# Small uploads per second with HTTP hooks next to none, in the same run: a
# release tusd-rs (file store, memory locker) on loopback, wrk sending
# creation-with-upload POSTs of KIB KiB (each creates an upload and finishes
# it: crates/tusd-rs/benches/wrk/create.lua), against
#   no-hooks   tusd-rs without hook flags
#   hooks      tusd-rs --hooks-http <receiver> --hooks-enabled-events
#              pre-create,post-finish (a blocking call before every upload,
#              a non-blocking one after it)
# The receiver is crates/tusd-rs/examples/hook_receiver.rs (hyper, one
# thread, HTTP/1.1 keep-alive, answers {}), not Python's http.server, which
# answers a few thousand calls per second at best and would be what is
# measured. Its own capacity is measured first (wrk straight at it, with
# benches/wrk/hook.lua), to show it is not the bottleneck.
# After each hooks run the receiver's counts are checked against the
# uploads stored: one pre-create per upload created, one post-finish per
# upload complete; and how many TCP connections tusd-rs opened to it for
# all those calls (the hook client keeps connections alive and reuses them).
# Rounds alternate which configuration goes first. Prints uploads/s per run
# and the medians.
#
# Environment: ROUNDS (5), SECS (10 per run), CONNS (32), WRK_THREADS (1),
# KIB (16), EXTRA_ARGS for both servers (say --durability none).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scripts/install-wrk.sh
cargo build --release -q -p tusd-rs --bin tusd-rs --example hook_receiver
rounds=${ROUNDS:-5} secs=${SECS:-10} conns=${CONNS:-32} threads=${WRK_THREADS:-1} kib=${KIB:-16}
bin=$root/target/release/tusd-rs
work=$(mktemp -d "$root/target/bench-hooks.XXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
echo "date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk -t$threads -c$conns -d${secs}s, creation-with-upload of $kib KiB; rounds: $rounds; server flags: ${EXTRA_ARGS:-(none)}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$root/target/release/examples/hook_receiver" >"$work/receiver.port" &
for _ in $(seq 50); do [[ -s "$work/receiver.port" ]] && break; sleep 0.1; done
hook_port=$(head -1 "$work/receiver.port")
hooks_url="http://127.0.0.1:$hook_port/hooks"
stats() { curl -s "http://127.0.0.1:$hook_port/stats"; }
# stat JSON FIELD: connections, or calls.<type>
stat() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); 
for k in sys.argv[2].split("."): d=d.get(k, 0) if isinstance(d, dict) else 0
print(d)' "$1" "$2"; }

capacity=$(wrk -t"$threads" -c"$conns" -d"${secs}s" -s "$root/crates/tusd-rs/benches/wrk/hook.lua" \
    "$hooks_url" | awk '/Requests\/sec/ {print $2}')
echo "receiver alone: $capacity calls/s (wrk straight at it)"

# start NAME [ARGS...] -> sets $pid $port $dir
start() {
    local name=$1; shift
    dir="$work/$name-$RANDOM"; mkdir -p "$dir"; port=$(free_port)
    # shellcheck disable=SC2086
    "$bin" --host 127.0.0.1 --port "$port" --upload-dir "$dir" ${EXTRA_ARGS:-} "$@" >"$dir.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null -X OPTIONS "http://127.0.0.1:$port/files/" && return 0
        sleep 0.1
    done
    echo "server $name did not start:" >&2; cat "$dir.log" >&2; exit 1
}

run() { # NAME [ARGS...] -> prints uploads/s, records it
    local name=$1; shift
    local before after rate created full
    before=$(stats)
    start "$name" "$@"
    rate=$(TUSD_WRK_BODY_KIB=$kib wrk -t"$threads" -c"$conns" -d"${secs}s" \
        -s "$root/crates/tusd-rs/benches/wrk/create.lua" "http://127.0.0.1:$port/files/" \
        | awk '/Requests\/sec/ {print $2}')
    sleep 1 # post-finish calls still in flight
    kill "$pid"; wait "$pid" 2>/dev/null || true
    after=$(stats)
    created=$(find "$dir" -maxdepth 1 -name '*.info' | wc -l)
    full=$(find "$dir" -maxdepth 1 -type f ! -name '*.*' -size "$((kib * 1024))"c | wc -l)
    results[$name]+="$rate "
    local line="round $round $name: $rate uploads/s ($created created, $full complete"
    if [[ $name == hooks ]]; then
        local pre post conn
        pre=$(( $(stat "$after" calls.pre-create) - $(stat "$before" calls.pre-create) ))
        post=$(( $(stat "$after" calls.post-finish) - $(stat "$before" calls.post-finish) ))
        conn=$(( $(stat "$after" connections) - $(stat "$before" connections) ))
        line+="; receiver: $pre pre-create, $post post-finish, over $conn connections"
        [[ $pre == "$created" ]] || line+=" MISMATCH: pre-create calls != uploads created"
        [[ $post == "$full" ]] || line+=" MISMATCH: post-finish calls != uploads complete"
    fi
    rm -rf "$dir"
    echo "$line)"
}

declare -A results
for round in $(seq "$rounds"); do
    if (( round % 2 )); then order=(no-hooks hooks); else order=(hooks no-hooks); fi
    for name in "${order[@]}"; do
        case $name in
            no-hooks) run no-hooks ;;
            hooks) run hooks --hooks-http "$hooks_url" --hooks-enabled-events pre-create,post-finish ;;
        esac
    done
done
echo
median() { echo "$1" | tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m_none=$(median "${results[no-hooks]}") m_hooks=$(median "${results[hooks]}")
echo "median uploads/s: no-hooks $m_none (rounds: ${results[no-hooks]}), hooks $m_hooks (rounds: ${results[hooks]})"
echo "hooks / no-hooks: $(python3 -c "print(f'{$m_hooks / $m_none:.2f}')")"
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
