#!/usr/bin/env bash
# Daemon CPU per routed chat message: `storm --scenario chat` with 5,000 conversations
# against a fresh release daemon per run, over TCP and WebSocket JSON, journal off and
# on (default fsync "always"), runs interleaved; prints each run and the medians.
# The primary figure is the daemon's CPU-seconds over storm's measurement window
# (`/proc/PID/stat` utime + stime, all threads, sampled by storm with --server-pid)
# divided by the messages routed in it: stable where p99 on a shared machine is not.
# Also the daemon's peak RSS (storm's samples of /proc/PID/status VmRSS).
#
# Usage:
#   benches/chat_cpu.sh [--runs N] [--rate R] [--duration S] [--transports "tcp ws-json"]
#                       [--journal off|on|both] [--no-build] [--out DIR] [--port P]
#     --runs N        repetitions of each case, interleaved [3]
#     --rate R        storm --rate (messages per second per conversation side pair;
#                     5,000 conversations x R = offered msg/s) [10: 50,000/s]
#     --duration S    measured seconds per run (after a 2 s warm-up) [10]
#     --transports T  [tcp ws-json]
#     --journal J     off, on (fsync "always") or both [both]
#     --backend B     [reactor] backend: epoll or uring [epoll]
#     --tls           also run every case over TLS (storm --tls) against the same daemon,
#                     right after its plaintext run: the daemon's client port gets a
#                     P-256 certificate for localhost from a throwaway CA (openssl CLI);
#                     rows show the transport as `tcp+tls`, `ws-json+tls`
#     --no-build      use the binaries already built
#     --syscalls      also count the daemon's system calls with `perf stat -p PID`
#                     (tracepoints syscalls:sys_enter_*) for S-4 s inside the window
#                     (from 4 s after storm starts: ~1 s of connects, 2 s of warm-up)
#                     and print them per routed message (the count / storm's msg/s x
#                     those seconds). perf costs the daemon some CPU: use it in runs of
#                     its own, not for the CPU figure
#     --baseline BIN  also run daemon binary BIN (e.g. a copy built from main), each
#                     of its runs right before the same run of this tree's daemon,
#                     with the same storm; rows are labelled `baseline` and `this`
#   DAEMON_BIN=/path/to/switchboard STORM_BIN=/path/to/storm  override the binaries.
#   REACTORS=N WORKERS=N  set reactor.threads / workers.threads (default: the daemon's).
#   SLICE_US=N  set reactor.sched_slice_us (default: the daemon's).
#
# Each run: storm --scenario chat --target 127.0.0.1:P --secret-file STATE/dev-secret
#   --source-addrs 127.0.0.2-127.0.0.9 --server-pid PID -n 5500 --agents 500
#   --capacity 10 --size 64 --warmup 2 --duration S --rate R --transport T --json -q
#   [--tls --ca-file SCRATCH/ca.pem --server-name localhost]
# Kills only the processes it started, by PID. Loopback only; every run self-stopping.

set -euo pipefail

RUNS=3
RATE=10
DURATION=10
TRANSPORTS="tcp ws-json"
JOURNALS="off on"
BUILD=1
OUT=""
PORT=7940
BASELINE=""
BACKEND=epoll
TLS_MODES="plain"
SYSCALLS=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS="${2:?}"; shift ;;
        --rate) RATE="${2:?}"; shift ;;
        --duration) DURATION="${2:?}"; shift ;;
        --transports) TRANSPORTS="${2:?}"; shift ;;
        --journal)
            case "${2:?}" in
                off) JOURNALS="off" ;; on) JOURNALS="on" ;; both) JOURNALS="off on" ;;
                *) echo "chat_cpu.sh: --journal off|on|both" >&2; exit 2 ;;
            esac
            shift ;;
        --no-build) BUILD=0 ;;
        --syscalls) SYSCALLS=1 ;;
        --backend) BACKEND="${2:?--backend needs epoll or uring}"; shift ;;
        --tls) TLS_MODES="plain tls" ;;
        --baseline) BASELINE="${2:?--baseline needs a binary}"; shift ;;
        --out) OUT="${2:?--out needs a directory}"; shift ;;
        --port) PORT="${2:?--port needs a number}"; shift ;;
        -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "chat_cpu.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_binaries chat_cpu.sh "$BUILD" "$DAEMON" "$STORM" ${BASELINE:+"$BASELINE"}
[ -n "$OUT" ] || OUT="$TARGET_DIR/chat-cpu/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
bench_scratch chatcpu

trap 'stop_daemon; rm -rf "$SCRATCH"' EXIT
TLS_CONF=""
if [ "$TLS_MODES" != plain ]; then
    # A throwaway CA and a P-256 certificate for localhost and 127.0.0.1.
    bench_cert "$SCRATCH" chat_cpu-ca
    TLS_CONF="[listeners.client.tls]
cert = \"$SCRATCH/cert.pem\"
key = \"$SCRATCH/key.pem\""
fi
trap 'exit 130' INT
trap 'exit 143' TERM

start_daemon() { # BIN JOURNAL(true|false) LOG
    local bin="$1"
    shift
    local dir="$SCRATCH/state"
    rm -rf "$dir"
    mkdir -p "$dir"
    cat >"$SCRATCH/switchboard.toml" <<EOF
state_dir = "$dir"

[listeners.client]
addr = "127.0.0.1:$PORT"

$TLS_CONF

[admin]
addr = "127.0.0.1:$((PORT + 1))"

[journal]
enabled = $1

[reactor]
backend = "$BACKEND"
${REACTORS:+threads = $REACTORS}
${SLICE_US:+sched_slice_us = $SLICE_US}

[workers]
${WORKERS:+threads = $WORKERS}

[log]
level = "warn"
EOF
    "$bin" run --config "$SCRATCH/switchboard.toml" >"$2" 2>&1 &
    DPID=$!
    wait_daemon "$dir" "$PORT" "$2"
}

{
    echo "# chat CPU per message, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "# daemon $DAEMON ($(git rev-parse --short HEAD 2>/dev/null || echo unknown)), storm $STORM"
    [ -z "$BASELINE" ] || echo "# baseline daemon $BASELINE"
    echo "# reactor backend $BACKEND"
    echo "# storm --scenario chat -n 5500 --agents 500 --capacity 10 --size 64 --warmup 2 --duration $DURATION --rate $RATE"
    [ "$TLS_MODES" = plain ] || echo "# and each case again over TLS (storm --tls; TLS 1.3, X25519, ECDSA P-256)"
    echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/report.txt"

SYSCALL_EVENTS="$(printf 'syscalls:sys_enter_%s,' read recvfrom readv write writev sendto sendmsg \
    epoll_wait epoll_pwait epoll_pwait2 epoll_ctl futex accept4 close)"
SYSCALL_EVENTS="${SYSCALL_EVENTS%,}"
LABELS="this"
[ -z "$BASELINE" ] || LABELS="baseline this"
for run in $(seq "$RUNS"); do
    for t0 in $TRANSPORTS; do
      for mode in $TLS_MODES; do
        t="$t0"
        tls_args=()
        if [ "$mode" = tls ]; then
            t="$t0+tls"
            tls_args=(--tls --ca-file "$SCRATCH/ca.pem" --server-name localhost)
        fi
        for j in $JOURNALS; do
          for label in $LABELS; do
            bin="$DAEMON"
            [ "$label" = baseline ] && bin="$BASELINE"
            enabled=false
            [ "$j" = on ] && enabled=true
            base="$OUT/chat-$label-$t-journal_$j-$run"
            : >"$base.json"
            echo "== run $run: $label, $t, journal $j" >&2
            if ! start_daemon "$bin" "$enabled" "$base.daemon.log"; then
                echo "   daemon did not start" >&2
                stop_daemon
                continue
            fi
            ppid=""
            if [ "$SYSCALLS" = 1 ] && [ "$DURATION" -gt 5 ]; then
                (sleep 4 && exec perf stat -x, -o "$base.syscalls" -p "$DPID" \
                    -e "$SYSCALL_EVENTS" -- sleep $((DURATION - 4))) 2>/dev/null &
                ppid=$!
            fi
            timeout --kill-after=10 300 "$STORM" --scenario chat --target "127.0.0.1:$PORT" \
                --secret-file "$SCRATCH/state/dev-secret" --source-addrs 127.0.0.2-127.0.0.9 \
                --server-pid "$DPID" -n 5500 --agents 500 --capacity 10 --size 64 \
                --warmup 2 --duration "$DURATION" --rate "$RATE" --transport "$t0" \
                ${tls_args[@]+"${tls_args[@]}"} --json -q >"$base.json" 2>"$base.err" || true
            [ -z "$ppid" ] || wait "$ppid" 2>/dev/null || true
            [ "$SYSCALLS" != 1 ] || echo $((DURATION - 4)) >"$base.syscall-secs"
            # The daemon's metrics at the end (journal fsync count and latency).
            curl -fsS --max-time 5 "http://127.0.0.1:$((PORT + 1))/metrics" >"$base.metrics" 2>/dev/null || true
            stop_daemon
            sleep 1
          done
        done
      done
    done
done

python3 - "$OUT" <<'PY' | tee -a "$OUT/report.txt"
import glob, json, os, statistics, sys
out = sys.argv[1]
rows = {}
print("| daemon | transport | journal | run | msgs routed | daemon CPU-s (window) | us/msg | msg/s | p99 ms | peak RSS MB | errors |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
def key(path):
    name = os.path.basename(path)[5:-5]
    label, rest = name.split("-", 1)
    t, rest = rest.split("-journal_")
    j, run = rest.rsplit("-", 1)
    return (int(run), t, j, label)
for path in sorted(glob.glob(os.path.join(out, "chat-*.json")), key=key):
    run, t, j, label = key(path)
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError):
        print(f"| {label} | {t} | {j} | {run} | n/a | | | | | | |")
        continue
    cpu = d.get("server_cpu") or {}
    us = cpu.get("us_per_message")
    p99 = (d.get("latency_us") or {}).get("p99")
    errs = sum((d.get("errors") or {}).values())
    peak = ((d.get("server_rss") or {}).get("peak_kb") or 0) / 1024
    rows.setdefault((label, t, j), []).append((us, d.get("messages_per_s"), p99, peak))
    print(f"| {label} | {t} | {j} | {run} | {d.get('messages', 0):,} | {cpu.get('window_cpu_s', 0):.2f} | "
          f"{us or 0:.2f} | {d.get('messages_per_s', 0):,.0f} | {(p99 or 0) / 1000:.2f} | {peak:.1f} | {errs} |")
journal = []
for path in sorted(glob.glob(os.path.join(out, "chat-*.metrics")), key=lambda p: key(p[:-8] + ".json")):
    run, t, j, label = key(path[:-8] + ".json")
    m, buckets = {}, []
    for line in open(path):
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        if name.startswith("switchboard_journal_fsync_latency_seconds_bucket"):
            buckets.append((float(name.split('le="')[1].split('"')[0]), float(value)))
        m[name] = float(value)
    n = m.get("switchboard_journal_fsync_latency_seconds_count", 0)
    if not n:
        continue
    p99 = next((le for le, c in buckets if c >= 0.99 * n), float("nan"))
    try:
        p50 = (json.load(open(path[:-8] + ".json")).get("latency_us") or {}).get("p50", 0) / 1000
    except (OSError, ValueError):
        p50 = float("nan")
    appends = m.get("switchboard_journal_appends_total", 0)
    journal.append(f"| {label} | {t} | {run} | {p50:.2f} | {n:,.0f} | {appends / n:.1f} | "
                   f"{1000 * m.get('switchboard_journal_fsync_latency_seconds_sum', 0) / n:.2f} | {1000 * p99:g} |")
if journal:
    print()
    print("| daemon | transport | run | p50 ms (storm) | fsyncs (daemon lifetime) | records per fsync | fsync mean ms | fsync p99 ms (bucket bound) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(journal))
calls = []
for path in sorted(glob.glob(os.path.join(out, "chat-*.syscalls")), key=lambda p: key(p[:-9] + ".json")):
    run, t, j, label = key(path[:-9] + ".json")
    try:
        secs = float(open(path[:-9] + ".syscall-secs").read())
        d = json.load(open(path[:-9] + ".json"))
        msgs = d["messages_per_s"] * secs
        counts = {}
        for line in open(path):
            f = line.strip().split(",")
            if len(f) > 2 and f[2].startswith("syscalls:sys_enter_") and f[0].isdigit():
                counts[f[2][len("syscalls:sys_enter_"):]] = int(f[0])
    except (OSError, ValueError, KeyError, ZeroDivisionError):
        continue
    if msgs > 0 and counts:
        per = ", ".join(f"{v / msgs:.2f} {k}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v / msgs >= 0.005)
        calls.append(f"| {label} | {t} | {j} | {run} | {per} |")
if calls:
    print()
    print("| daemon | transport | journal | run | system calls per routed message (perf stat, inside the window) |")
    print("|---|---|---|---:|---|")
    print("\n".join(calls))
print()
print("| daemon | transport | journal | runs | us/msg median (min-max) | msg/s median | p99 ms median (min-max) | peak RSS MB median (min-max) |")
print("|---|---|---|---:|---|---:|---|---|")
for (label, t, j), v in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
    us = [x[0] for x in v if x[0]]
    rate = [x[1] for x in v if x[1]]
    p99 = [x[2] / 1000 for x in v if x[2]]
    peak = [x[3] for x in v if x[3]] or [0]
    if not us:
        continue
    print(f"| {label} | {t} | {j} | {len(v)} | {statistics.median(us):.2f} ({min(us):.2f}-{max(us):.2f}) | "
          f"{statistics.median(rate):,.0f} | {statistics.median(p99):.2f} ({min(p99):.2f}-{max(p99):.2f}) | "
          f"{statistics.median(peak):.1f} ({min(peak):.1f}-{max(peak):.1f}) |")
PY
echo "raw results: $OUT" >&2
