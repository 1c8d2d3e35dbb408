#!/usr/bin/env bash
# The web edge's protocol figures: the same storm scenarios over plain TCP and over a
# WebSocket (`--transport ws-json|ws-bin`) against the daemon's client port, back to
# back in one run, each on a fresh daemon (loopback only).
#
# Usage:
#   benches/web_figures.sh [--quick] [--no-build] [--out DIR] [--port PORT] [--journal]
#     --quick     small, short runs (a smoke test of the procedure, not figures)
#     --no-build  use the binaries already built
#     --out DIR   where to keep JSON results, storm's stderr and daemon logs
#     --port P    client port (admin on P+1) [default 7840]
#     --journal   keep the journal on (fsync "always"); default off, as the chat
#                 goal of the README is stated with the journal off
#     --only NAME run only the session, chat or fanout cases
#   STORM_BIN=/path/to/storm benches/web_figures.sh
#
# Runs (S = --target 127.0.0.1:P --secret-file STATE/dev-secret --source-addrs
# 127.0.0.2-127.0.0.9 --server-pid PID --json -q), for each transport T:
#   session  storm --scenario idle -n 10000 --procs 2 --duration 10 --transport T  (tcp, ws-json, ws-bin)
#   chat     storm --scenario chat -n 5500 --agents 500 --capacity 10 --size 64 --warmup 2
#            --duration 10 --rate 8 --transport T        (tcp, ws-json: 40,000 msg/s offered)
#   fanout   storm --scenario fanout -n 10000 --count 10 --transport T  (tcp, ws-json, ws-bin)
# --quick: 2,000 sessions for 3 s, chat -n 1100 --agents 100 for 3 s, fan-out to 2,000.
# Kills only the processes it started, by PID.

set -euo pipefail

QUICK=0
BUILD=1
OUT=""
PORT=7840
JOURNAL=false
ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --no-build) BUILD=0 ;;
        --out) OUT="${2:?--out needs a directory}"; shift ;;
        --port) PORT="${2:?--port needs a number}"; shift ;;
        --journal) JOURNAL=true ;;
        --only)
            ONLY="${2:?--only needs session, chat or fanout}"; shift
            case "$ONLY" in session|chat|fanout) ;; *) echo "web_figures.sh: --only session|chat|fanout" >&2; exit 2 ;; esac ;;
        -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "web_figures.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SOURCES="127.0.0.2-127.0.0.9"
if [ "$QUICK" = 1 ]; then
    IDLE=(-n 2000 --procs 2 --duration 3)
    CHAT=(-n 1100 --agents 100 --capacity 12 --size 64 --warmup 1 --duration 3 --rate 8)
    FANOUT=(-n 2000 --count 5)
else
    IDLE=(-n 10000 --procs 2 --duration 10)
    CHAT=(-n 5500 --agents 500 --capacity 10 --size 64 --warmup 2 --duration 10 --rate 8)
    FANOUT=(-n 10000 --count 10)
fi

bench_binaries web_figures.sh "$BUILD" "$DAEMON" "$STORM"
[ -n "$OUT" ] || OUT="$TARGET_DIR/web-figures/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
bench_scratch web

trap 'stop_daemon; rm -rf "$SCRATCH"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_daemon() { # LOG
    local dir="$SCRATCH/state"
    rm -rf "$dir"
    mkdir -p "$dir"
    cat >"$SCRATCH/switchboard.toml" <<EOF
state_dir = "$dir"

[listeners.client]
addr = "127.0.0.1:$PORT"

[admin]
addr = "127.0.0.1:$((PORT + 1))"

[journal]
enabled = $JOURNAL

[log]
level = "warn"
EOF
    "$DAEMON" run --config "$SCRATCH/switchboard.toml" >"$1" 2>&1 &
    DPID=$!
    wait_daemon "$dir" "$PORT" "$1"
}

run_case() { # NAME TRANSPORT storm-args...
    local name="$1" t="$2"
    shift 2
    if [ -n "$ONLY" ] && [ "$ONLY" != "$name" ]; then
        return 0
    fi
    local base="$OUT/$name-$t"
    : >"$base.json"
    echo "== $name over $t: storm $* --transport $t" >&2
    start_daemon "$base.daemon.log" || { echo "   daemon did not start" >&2; stop_daemon; return 0; }
    timeout --kill-after=10 300 "$STORM" --target "127.0.0.1:$PORT" \
        --secret-file "$SCRATCH/state/dev-secret" --source-addrs "$SOURCES" \
        --server-pid "$DPID" --json -q "$@" --transport "$t" >"$base.json" 2>"$base.err" || true
    stop_daemon
    sleep 1
}

for t in tcp ws-json ws-bin; do run_case session "$t" --scenario idle "${IDLE[@]}"; done
for t in tcp ws-json; do run_case chat "$t" --scenario chat "${CHAT[@]}"; done
for t in tcp ws-json ws-bin; do run_case fanout "$t" --scenario fanout "${FANOUT[@]}"; done

{
    echo
    echo "## web edge figures ($([ "$QUICK" = 1 ] && echo 'QUICK smoke run' || echo 'full run'))"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- switchboard $(git rev-parse --short HEAD 2>/dev/null || echo unknown), journal enabled = $JOURNAL"
    echo "- raw results: $OUT"
    echo
} | tee "$OUT/report.md"

python3 - "$OUT" <<'PY' | tee -a "$OUT/report.md"
import json, os, sys
out = sys.argv[1]
def load(name, t):
    try:
        with open(os.path.join(out, f"{name}-{t}.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
def get(d, path):
    for k in path.split("."):
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d
def errs(d):
    e = None if d is None else d.get("errors")
    return sum(e.values()) if isinstance(e, dict) else None
def f(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, int):
        return f"{v:,}"
    if unit == "ms":
        return f"{v / 1000:.2f}"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"
ROWS = [
    ("session", "RSS growth per authenticated session (B)", "server_rss.growth_per_connection_bytes", ""),
    ("session", "sessions open at the end", "connections_open_at_end", ""),
    ("session", "handshakes per s", "connect_rate_per_s", ""),
    ("session", "handshake p99 (ms)", "connect_latency_us.p99", "ms"),
    ("chat", "routed messages per s", "messages_per_s", ""),
    ("chat", "latency p50 (ms)", "latency_us.p50", "ms"),
    ("chat", "latency p99 (ms)", "latency_us.p99", "ms"),
    ("chat", "server peak RSS (kB)", "server_rss.peak_kb", ""),
    ("fanout", "last delivery per notice p50 (ms)", "latency_us.p50", "ms"),
    ("fanout", "last delivery per notice max (ms)", "latency_us.max", "ms"),
    ("fanout", "deliveries", "messages", ""),
]
print("| run | figure | tcp | ws-json | ws-bin | ws-json / tcp |")
print("|---|---|---:|---:|---:|---:|")
for name, label, path, unit in ROWS + [(n, "errors", None, "") for n in ("session", "chat", "fanout")]:
    vals = {}
    for t in ("tcp", "ws-json", "ws-bin"):
        d = load(name, t)
        vals[t] = errs(d) if path is None else get(d, path)
    a, b = vals["ws-json"], vals["tcp"]
    r = f"{a / b:.2f}" if isinstance(a, (int, float)) and b else "n/a"
    print(f"| {name} | {label} | {f(vals['tcp'], unit)} | {f(vals['ws-json'], unit)} | {f(vals['ws-bin'], unit)} | {r} |")
PY
