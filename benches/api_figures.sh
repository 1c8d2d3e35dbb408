#!/usr/bin/env bash
# The HTTP API's figures, measured from outside with public tools: `wrk` (Debian
# package `wrk`) against a release daemon on loopback, keep-alive connections.
#
# Usage:
#   benches/api_figures.sh [--no-build] [--port PORT] [--duration S] [--connections N]
#     --no-build       use the binary already built (target/release/switchboard)
#     --port P         client port [default 7860]
#     --duration S     seconds per wrk run [default 10]
#     --connections N  keep-alive connections [default 64]
#
# What runs: the daemon on built-in defaults but the port, the journal off, one API key
# with every scope. One conversation is opened through the API (an API channel's
# visitor) and given 50 messages; then, each for --duration seconds with one wrk thread:
#   transcript  GET /api/v1/conversations/1/messages?limit=20   (a page of 20 entries)
#   list        GET /api/v1/conversations?limit=20
#   one         GET /api/v1/conversations/1
# Printed: requests/s, latency p50/p99 (wrk --latency), the daemon's CPU-seconds over
# the run and its CPU per request. The goal (issue 19): >= 20,000 transcript pages/s.
# Kills only the daemon it started, by PID.

set -euo pipefail

BUILD=1
PORT=7860
DURATION=10
CONNS=64
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0 ;;
        --port) PORT="${2:?}"; shift ;;
        --duration) DURATION="${2:?}"; shift ;;
        --connections) CONNS="${2:?}"; shift ;;
        -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "api_figures.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

command -v wrk >/dev/null || { echo "api_figures.sh: needs wrk (apt-get install wrk)" >&2; exit 2; }
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_binaries api_figures.sh "$BUILD" "$DAEMON"
bench_scratch api
WORK="$SCRATCH"
trap 'stop_daemon; rm -rf "$WORK"' EXIT

"$DAEMON" api-key --id bench --scopes admin >"$WORK/key" 2>"$WORK/key.toml"
KEY="$(cat "$WORK/key")"
cat >"$WORK/sb.toml" <<EOF
state_dir = "$WORK/state"
[listeners.client]
addr = "127.0.0.1:$PORT"
[admin]
enabled = false
[journal]
enabled = false
$(cat "$WORK/key.toml")
EOF
"$DAEMON" --config "$WORK/sb.toml" >"$WORK/daemon.log" 2>&1 &
DPID=$!
BASE="http://127.0.0.1:$PORT/api/v1"
for _ in $(seq 50); do
    curl -sf -o /dev/null "$BASE/agents" -H "Authorization: Bearer $KEY" && break
    sleep 0.1
done
AUTH="Authorization: Bearer $KEY"
curl -sf -o /dev/null -H "$AUTH" -H 'Content-Type: application/json' \
    -d '{"visitor":"bench-visitor","body":"hello"}' "$BASE/conversations"
for i in $(seq 2 50); do
    curl -sf -o /dev/null -H "$AUTH" -H 'Content-Type: application/json' \
        -d "{\"body\":\"message $i of the benchmark transcript\"}" "$BASE/conversations/1/messages"
done

cpu() { awk '{print $14 + $15}' "/proc/$DPID/stat"; }
TICKS="$(getconf CLK_TCK)"
printf '%-11s %12s %9s %9s %12s\n' case "requests/s" "p50" "p99" "CPU us/req"
for case in transcript list one; do
    case "$case" in
        transcript) URL="$BASE/conversations/1/messages?limit=20" ;;
        list) URL="$BASE/conversations?limit=20" ;;
        one) URL="$BASE/conversations/1" ;;
    esac
    before="$(cpu)"
    wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "$AUTH" "$URL" >"$WORK/$case.txt"
    after="$(cpu)"
    rps="$(awk '/^Requests\/sec/ {print $2}' "$WORK/$case.txt")"
    p50="$(awk '$1 == "50%" {print $2}' "$WORK/$case.txt")"
    p99="$(awk '$1 == "99%" {print $2}' "$WORK/$case.txt")"
    total="$(awk '/requests in/ {print $1}' "$WORK/$case.txt")"
    non2xx="$(awk '/Non-2xx/ {print $NF}' "$WORK/$case.txt")"
    us="$(awk -v a="$after" -v b="$before" -v t="$TICKS" -v n="$total" \
        'BEGIN { printf "%.1f", (a - b) / t * 1e6 / n }')"
    printf '%-11s %12s %9s %9s %12s%s\n' "$case" "$rps" "$p50" "$p99" "$us" \
        "${non2xx:+  (non-2xx: $non2xx)}"
done
echo "machine: $(nproc) cores, $(uname -r); wrk -t1 -c$CONNS -d${DURATION}s on the same machine"
