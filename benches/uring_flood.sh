#!/usr/bin/env bash
# The echo flood on several daemon builds and backends, interleaved (issue 22: the
# io_uring backend against epoll). Loopback only.
#
# Usage:
#   benches/uring_flood.sh OUT RUNS VARIANT...
#     VARIANT  NAME:DAEMON:BACKEND[:URING_BUFFERS[:URING_BUFFER_BYTES]], e.g.
#              epoll:target/release/switchboard:epoll
#              uring128:target/release/switchboard:uring:128
#              uring64k:target/release/switchboard:uring:64:65536
#              or NAME:PROGRAM:floor[:ARGS] for a floor server (benches/floor, built by
#              benches/floor/build.sh), started as `PROGRAM --port PORT ARGS`, e.g.
#              c-epoll:target/floor/echo:floor
#              c-uring:target/floor/uring_echo:floor:--buffers 512 --flush 16
#   Each of RUNS rounds runs every VARIANT once, in order: a fresh daemon with
#   `[reactor] backend = BACKEND` (and `uring_buffers`, `uring_buffer_bytes`), an `[listeners.echo]` as in
#   benches/compare.sh (or the floor server), then
#     storm --raw --source-addrs 127.0.0.2-127.0.0.9 --server-pid PID --json
#           --scenario echo --mode flood --size 1024 --connections 1000 --duration SECS
#   STORM=/path/to/storm [target/release/storm]; SECS [10];
#   PERF=1: `perf record -g` of the daemon for 5 s from 3 s into each run
#   (OUT/NAME-RUN.perf.data; perf costs the daemon CPU: not for the figures).
#   Prints one line per run (msg/s, p99, daemon CPU per message, peak RSS) and keeps
#   storm's JSON, the daemon's log and `switchboard_uring_echo_copies_total` in OUT.
#   Take the lock others use for benchmarks: `flock /work/bench.lock benches/...`.
#
# Bounded: every storm run has a timeout; the script kills only the daemon it
# started, by PID, when it exits for any reason.
set -euo pipefail
if [ $# -lt 3 ]; then sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 2; fi
OUT="$1"; RUNS="$2"; shift 2
USER_STORM=${STORM:-}
HERE="$PWD"
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # echo_config (it cd's to the root)
cd "$HERE"
STORM=${USER_STORM:-target/release/storm}
SECS=${SECS:-10}
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PID=""
cleanup() {
    [ -n "$PID" ] || return 0
    kill "$PID" 2>/dev/null || true
    sleep 1
    kill -9 "$PID" 2>/dev/null || true
}
trap cleanup EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/load"
for run in $(seq "$RUNS"); do
    for v in "$@"; do
        IFS=: read -r name bin backend bufs bytes <<<"$v"
        port=$(free_port)
        aport=$(free_port)
        dir="$OUT/scratch-$name-$run"
        mkdir -p "$dir"
        if [ "$backend" = floor ]; then
            # shellcheck disable=SC2086 # ARGS are words
            "$bin" --port "$port" --timeout $((SECS + 300)) ${bufs:-} >"$dir/log" 2>&1 &
        else
            extra=""
            [ -z "${bufs:-}" ] || extra="uring_buffers = $bufs"
            [ -z "${bytes:-}" ] || extra="$extra"$'\n'"uring_buffer_bytes = $bytes"
            {
                echo_config "$dir/state" "$port" false "127.0.0.1:$aport"
                printf '\n[reactor]\nbackend = "%s"\n%s\n' "$backend" "$extra"
            } >"$dir/switchboard.toml"
            "$bin" run --config "$dir/switchboard.toml" >"$dir/log" 2>&1 &
        fi
        PID=$!
        for _ in $(seq 100); do
            (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
            sleep 0.1
        done
        sleep 1
        if [ -n "${PERF:-}" ]; then
            (sleep 3 && exec perf record -q -g -o "$OUT/$name-$run.perf.data" -p "$PID" -- sleep 5) \
                >/dev/null 2>&1 &
        fi
        timeout --kill-after=10 $((SECS + 120)) "$STORM" --target "127.0.0.1:$port" --raw \
            --source-addrs 127.0.0.2-127.0.0.9 --server-pid "$PID" --json --quiet \
            --scenario echo --mode flood --size 1024 --connections 1000 --duration "$SECS" \
            >"$OUT/$name-$run.json" 2>"$OUT/$name-$run.err" || echo "storm failed: $name run $run"
        [ "$backend" = floor ] || curl -s "127.0.0.1:$aport/metrics" | grep -E "^switchboard_uring_echo_copies_total" \
            >"$OUT/$name-$run.metrics" || true
        kill "$PID"
        wait "$PID" 2>/dev/null || true
        PID=""
        wait 2>/dev/null || true
        python3 - "$OUT/$name-$run.json" "$name" "$run" <<'P' || true
import json, sys
j = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:>14} run {sys.argv[3]}: {j['messages_per_s']:>12,.0f} msg/s  "
      f"p99 {j['latency_us']['p99'] / 1000:6.1f} ms  "
      f"cpu/msg {j.get('server_cpu', {}).get('us_per_message', 0):.3f} us  "
      f"peak RSS {j['server_rss']['peak_kb'] / 1024:5.1f} MB  errors {j['errors']}")
P
        sleep 1
    done
done | tee "$OUT/summary"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load"
