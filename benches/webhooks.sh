#!/usr/bin/env bash
# Webhook delivery throughput and lag: `storm --scenario chat` against a daemon with the
# journal on (fsync "always") and one [[webhooks]] endpoint, a local receiver
# (tests/webhooks/receiver.py --bench: answers 204, notes each event's lag = arrival
# minus the event's time_ms). Prints events/s delivered while storm ran, the backlog
# left when it stopped and how long it took to drain, and lag percentiles.
#
# Usage:
#   benches/webhooks.sh [--quick] [--no-build] [--out DIR] [--port PORT] [--rate R]
#                       [--batch N]
#     --quick     a short, small run (a smoke test of the procedure, not figures)
#     --no-build  use the release binaries already built
#     --out DIR   where to keep the receiver's records, storm's JSON and the logs
#     --port P    client port (admin P+1, receiver P+2) [default 7980]
#     --rate R    storm's messages per second per conversation [default 8]
#     --batch N   the endpoint's max_batch [default 100]
#   Needs python3 (standard library only). Kills only the processes it started, by PID.
#
# Run: storm --scenario chat -n 5500 --agents 500 --capacity 10 --size 64 --warmup 2
#      --duration 10 --rate R (5,000 conversations: 40,000 messages/s offered at R = 8;
#      every stored message is one message.created event); --quick: -n 1100 --agents 100
#      --duration 3.

set -euo pipefail

QUICK=0
BUILD=1
OUT=""
PORT=7980
RATE=8
BATCH=100
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --no-build) BUILD=0 ;;
        --out) OUT="${2:?--out needs a directory}"; shift ;;
        --port) PORT="${2:?--port needs a number}"; shift ;;
        --rate) RATE="${2:?--rate needs a number}"; shift ;;
        --batch) BATCH="${2:?--batch needs a number}"; shift ;;
        -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "webhooks.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if [ "$QUICK" = 1 ]; then
    CHAT=(-n 1100 --agents 100 --capacity 12 --size 64 --warmup 1 --duration 3 --rate "$RATE")
else
    CHAT=(-n 5500 --agents 500 --capacity 10 --size 64 --warmup 2 --duration 10 --rate "$RATE")
fi

bench_binaries webhooks.sh "$BUILD" "$DAEMON" "$STORM"
[ -n "$OUT" ] || OUT="$TARGET_DIR/webhook-figures/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
bench_scratch hooks

RPID=""
cleanup() {
    stop_daemon
    if [ -n "$RPID" ]; then
        kill -TERM "$RPID" 2>/dev/null || true
        wait "$RPID" 2>/dev/null || true
    fi
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

RECEIVED="$OUT/received.jsonl"
: >"$RECEIVED"
python3 "$ROOT/tests/webhooks/receiver.py" --bench --port "$((PORT + 2))" --out "$RECEIVED" \
    >"$OUT/receiver.out" 2>&1 &
RPID=$!

STATE="$SCRATCH/state"
mkdir -p "$STATE"
cat >"$SCRATCH/switchboard.toml" <<EOF
state_dir = "$STATE"

[listeners.client]
addr = "127.0.0.1:$PORT"

[admin]
addr = "127.0.0.1:$((PORT + 1))"

[log]
level = "warn"

[[webhooks]]
id = "bench"
url = "http://127.0.0.1:$((PORT + 2))/hooks"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
max_batch = $BATCH
EOF
"$DAEMON" run --config "$SCRATCH/switchboard.toml" >"$OUT/daemon.log" 2>&1 &
DPID=$!
wait_daemon "$STATE" "$PORT" "$OUT/daemon.log" || exit 1

metric() { # NAME: the bench endpoint's value, or 0
    python3 - "$((PORT + 1))" "$1" <<'PY'
import sys, urllib.request
port, name = sys.argv[1], sys.argv[2]
text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
for line in text.splitlines():
    if line.startswith(name + "{") and 'endpoint="bench"' in line:
        print(line.rsplit(" ", 1)[1]); break
else:
    print(0)
PY
}

echo "== storm ${CHAT[*]} (journal on, one webhook endpoint, max_batch $BATCH)" >&2
STORM_START=$(date +%s.%N)
timeout --kill-after=10 300 "$STORM" --target "127.0.0.1:$PORT" \
    --secret-file "$STATE/dev-secret" --source-addrs 127.0.0.2-127.0.0.9 \
    --server-pid "$DPID" --json -q --scenario chat "${CHAT[@]}" \
    >"$OUT/storm.json" 2>"$OUT/storm.err" || true
STORM_END=$(date +%s.%N)
BACKLOG_LAG=$(metric switchboard_webhook_lag_seconds)
# Wait (at most 120 s) for the endpoint to catch up: lag 0 twice in a row.
zero=0
for _ in $(seq 240); do
    if [ "$(metric switchboard_webhook_lag_seconds)" = "0.0" ]; then
        zero=$((zero + 1))
        [ "$zero" -ge 2 ] && break
    else
        zero=0
    fi
    sleep 0.5
done
DRAINED=$(date +%s.%N)
# CPU seconds of the webhook thread, the journal writer, the whole daemon and the
# receiver (utime + stime from /proc, in clock ticks).
cpu() { # STATFILE...
    python3 - "$@" <<'PY'
import os, sys
tick = os.sysconf("SC_CLK_TCK")
for path in sys.argv[1:]:
    try:
        data = open(path).read()
    except OSError:
        continue
    name = data[data.index("(") + 1:data.rindex(")")]
    f = data[data.rindex(")") + 2:].split()
    print(f"{name}={(int(f[11]) + int(f[12])) / tick:.1f}s", end=" ")
print()
PY
}
CPU_THREADS=$(cpu /proc/"$DPID"/task/*/stat | tr ' ' '\n' | grep -E '^(webhook|journal)' | tr '\n' ' ')
CPU_DAEMON=$(cpu /proc/"$DPID"/stat)
CPU_RECEIVER=$(cpu /proc/"$RPID"/stat)
DELIVERED=$(metric switchboard_webhook_events_delivered_total)
FAILURES=$(metric switchboard_webhook_failures_total)

{
    echo
    echo "## webhook figures ($([ "$QUICK" = 1 ] && echo 'QUICK smoke run' || echo 'full run'))"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- switchboard $(git rev-parse --short HEAD 2>/dev/null || echo unknown); storm ${CHAT[*]}"
    echo "- raw results: $OUT"
    echo "- CPU: daemon $CPU_DAEMON(of which $CPU_THREADS); receiver $CPU_RECEIVER"
    echo
} | tee "$OUT/report.md"

python3 - "$RECEIVED" "$OUT/storm.json" "$STORM_START" "$STORM_END" "$DRAINED" \
    "$DELIVERED" "$FAILURES" "$BACKLOG_LAG" <<'PY' | tee -a "$OUT/report.md"
import json, sys
path, storm_path, t0, t1, t2, delivered, failures, backlog_lag = sys.argv[1:9]
t0, t1, t2 = float(t0) * 1000, float(t1) * 1000, float(t2) * 1000
posts, lags, during = [], [], 0
with open(path) as f:
    for line in f:
        r = json.loads(line)
        posts.append(r["at"])
        lags.extend(r["lags"])
        if r["at"] <= t1:
            during += len(r["lags"])
try:
    storm = json.load(open(storm_path))
except (OSError, ValueError):
    storm = {}
def pct(v, q):
    if not v:
        return float("nan")
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]
n = len(lags)
window = (t1 - t0) / 1000
print(f"| figure | value |")
print(f"|---|---:|")
print(f"| storm messages/s (routed, its measurement window) | {storm.get('messages_per_s', float('nan')):,.0f} |")
print(f"| events received | {n:,} in {len(posts):,} POSTs |")
print(f"| events/s received while storm ran ({window:.1f} s, warm-up included) | {during / window:,.0f} |")
if posts:
    busy = (max(posts) - min(posts)) / 1000
    print(f"| events/s, first to last POST ({busy:.1f} s) | {n / busy if busy else float('nan'):,.0f} |")
print(f"| lag when storm stopped (s) | {float(backlog_lag):.2f} |")
print(f"| drained (s after storm stopped) | {(t2 - t1) / 1000:.1f} |")
print(f"| lag p50 / p99 / max (ms) | {pct(lags, .5):,.0f} / {pct(lags, .99):,.0f} / {max(lags) if lags else float('nan'):,.0f} |")
print(f"| delivered (daemon metric) / failed attempts | {delivered} / {failures} |")
PY
