#!/usr/bin/env bash
# TLS handshakes with storm: full and resumed (TLS 1.3 session tickets), against the
# release daemon terminating TLS itself and against nginx (`stream`, 2 workers, the same
# certificate) terminating TLS in front of the daemon's plaintext port, in one run with
# the same storm. Each pass: storm --scenario connect --raw --tls [--tls-resume] opens N
# connections (a connection counts once its handshake completes; --raw: no Hello), and
# the CPU of the TLS terminator is read from /proc/PID/stat (utime + stime) before and
# after: the daemon's process, or nginx's master and workers (without the daemon behind).
#
# Usage:
#   benches/tls_connect.sh [-n N] [--runs R] [--no-build] [--no-nginx]
#     -n N          connections per pass [10000]
#     --runs R      repetitions of the four passes, interleaved [1]
#     --max-inflight M  storm's handshakes in flight [200]
#   DAEMON_BIN=... STORM_BIN=...  override the binaries.
#
# Certificate: ECDSA P-256 for localhost from a throwaway CA (openssl CLI); storm offers
# X25519 first (the SDK's profile) and AES-128-GCM first. Kills only the processes it
# started, by PID. Loopback only; every pass is bounded (timeout 120 s).

set -euo pipefail

N=10000
RUNS=1
BUILD=1
NGINX=1
INFLIGHT=200
PORT=7986
while [ $# -gt 0 ]; do
    case "$1" in
        -n) N="${2:?}"; shift ;;
        --runs) RUNS="${2:?}"; shift ;;
        --max-inflight) INFLIGHT="${2:?}"; shift ;;
        --no-build) BUILD=0 ;;
        --no-nginx) NGINX=0 ;;
        -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "tls_connect.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_binaries tls_connect.sh "$BUILD" "$DAEMON" "$STORM"
bench_scratch tlsconnect
NPID=""
stop_nginx() {
    [ -n "$NPID" ] || return 0
    kill -QUIT "$NPID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$NPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$NPID" 2>/dev/null || true
    wait "$NPID" 2>/dev/null || true
    NPID=""
}
trap 'stop_nginx; stop_daemon; rm -rf "$SCRATCH"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cd "$SCRATCH"
bench_cert "$SCRATCH" tls_connect-ca
mkdir -p state
cat >switchboard.toml <<EOF
state_dir = "$SCRATCH/state"

[listeners.client]
addr = "127.0.0.1:$PORT"

[listeners.client.tls]
cert = "$SCRATCH/cert.pem"
key = "$SCRATCH/key.pem"

[admin]
addr = "127.0.0.1:$((PORT + 1))"

[heartbeat]
handshake_timeout = "10m"

[limits]
max_connections = 100000
max_connections_per_ip = 100000
accept_rate = 1000000
accept_burst = 1000000

[journal]
enabled = false

[log]
level = "warn"
EOF
"$DAEMON" run --config switchboard.toml >daemon.log 2>&1 &
DPID=$!
wait_daemon "$SCRATCH/state" "$PORT" daemon.log

FRONT=$((PORT + 2))
if [ "$NGINX" = 1 ]; then
    cat >nginx.conf <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 2;
worker_rlimit_nofile 40000;
pid $SCRATCH/nginx.pid;
error_log $SCRATCH/nginx-error.log;
events { worker_connections 30000; }
stream {
    server {
        listen 127.0.0.1:$FRONT ssl;
        ssl_certificate $SCRATCH/cert.pem;
        ssl_certificate_key $SCRATCH/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        proxy_pass 127.0.0.1:$PORT;
        proxy_timeout 10m;
    }
}
EOF
    nginx -p "$SCRATCH" -c "$SCRATCH/nginx.conf" -e "$SCRATCH/nginx-error.log" -g 'daemon off;' &
    NPID=$!
    sleep 1
fi

# cpu_ticks PID...: summed utime + stime (clock ticks) of the processes.
cpu_ticks() {
    local t=0 pid f
    for pid in "$@"; do
        f=$(sed 's/^.*) //' "/proc/$pid/stat")
        # shellcheck disable=SC2086
        set -- $f
        t=$((t + ${12} + ${13}))
    done
    echo "$t"
}

# pass NAME PORT RESUME PIDS...: one storm run; prints a row.
pass() {
    local name="$1" port="$2" resume="$3"
    shift 3
    local before after json
    before=$(cpu_ticks "$@")
    json=$(timeout --kill-after=10 120 "$STORM" --scenario connect --raw --tls \
        --ca-file "$SCRATCH/ca.pem" --server-name localhost ${resume:+--tls-resume} \
        --target "127.0.0.1:$port" -n "$N" --max-inflight "$INFLIGHT" \
        --source-addrs 127.0.0.2-127.0.0.9 --json -q 2>/dev/null) || true
    after=$(cpu_ticks "$@")
    python3 - "$name" "$before" "$after" "$N" "$json" <<'PY'
import json, sys
name, before, after, n, raw = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
try:
    d = json.loads(raw)
except ValueError:
    print(f"| {name} | storm failed | | | | | |")
    sys.exit(0)
cpu = (after - before) / 100
c = d.get("counters", {})
full, resumed = c.get("tls_full", 0), c.get("tls_resumed", 0)
errs = sum(d.get("errors", {}).values())
per = d["connections"] / cpu if cpu > 0 else float("nan")
print(f"| {name} | {full:,} / {resumed:,} | {d['connect_rate_per_s']:,.0f} | {cpu:.2f} | {per:,.0f} | "
      f"{d['connect_latency_us']['p50'] / 1000:.2f} / {d['connect_latency_us']['p99'] / 1000:.2f} | {errs} |")
PY
    sleep 2
}

echo "# TLS handshakes, $(date -u '+%Y-%m-%d %H:%M UTC'), $N connections per pass, max in flight $INFLIGHT"
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| pass | full / resumed | handshakes/s (wall) | terminator CPU-s | handshakes per CPU-second | connect p50 / p99 ms | errors |"
echo "|---|---:|---:|---:|---:|---|---:|"
for _ in $(seq "$RUNS"); do
    pass "daemon, full" "$PORT" "" "$DPID"
    pass "daemon, resumed" "$PORT" 1 "$DPID"
    if [ -n "$NPID" ]; then
        # nginx's master and its workers (the daemon behind it is not counted).
        mapfile -t NGINX_PIDS < <(echo "$NPID"; pgrep -P "$NPID")
        pass "nginx, full" "$FRONT" "" "${NGINX_PIDS[@]}"
        pass "nginx, resumed" "$FRONT" 1 "${NGINX_PIDS[@]}"
    fi
done
