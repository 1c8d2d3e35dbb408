#!/usr/bin/env bash
# The kernel floor of the chat path: a C relay that makes the daemon's system calls
# per chat message and does nothing else (benches/floor/relay.c), loaded like
# `storm --scenario chat -n 5500 --agents 500 --capacity 10` (benches/floor/load.c),
# optionally interleaved with the daemon's own figure (benches/chat_cpu.sh) in the
# same session, so the two can be compared on this machine as it is at the time.
#
# Usage:
#   benches/chat_floor.sh [--runs N] [--rates "4 8"] [--duration S] [--modes "direct handoff"]
#                         [--size B] [--daemon] [--transports "tcp ws-json"] [--no-build]
#                         [--out DIR] [--port P] [--lock FILE]
#     --runs N        repetitions of each case, interleaved [3]
#     --rates R       storm-style rates: 5,000 conversations x R messages/s offered [4 8]
#     --duration S    measured seconds per run, after a 2 s warm-up [10]
#     --modes M       relay modes [direct handoff]:
#                       direct   2 reactor threads, a conversation's connections on
#                                one of them: read, then one write per socket per turn
#                       handoff  2 reactors + 2 workers: each turn's frames go to a
#                                worker and the acks/deliveries back, one locked append
#                                and one eventfd write each way per batch
#     --size B        message bytes (storm's Send with a 64-byte body is 128) [112]
#     --daemon        after the floor runs of each round, one run of
#                     `benches/chat_cpu.sh --runs 1 --rate R --journal off
#                     --transports T --no-build` (the release daemon and storm must be
#                     built: cargo build --release --workspace --bins)
#     --transports T  the daemon's transports with --daemon [tcp ws-json]
#     --no-build      use the floor programs already built (benches/floor/build.sh)
#     --lock FILE     take flock(FILE) around each round (one rate, one repetition),
#                     so other measurements can run between rounds
#     --profile       `perf record -g -p RELAY` for S-4 s inside each floor run's window
#                     and, in floor-MODE-rR-RUN.profile.txt, the share of the relay's
#                     samples under each system call (perf report --children); perf
#                     costs the relay some CPU: for the breakdown, not the CPU figure
#
# Each floor run: relay -p P -n 5500 -m MODE (2 threads, or 2 + 2), then
#   load -p P -P RELAY_PID -n 5500 -a 500 -k 10 -R R -s B -W 2 -D S -j 2 -S 8
# (2 threads, sources 127.0.0.2-127.0.0.9). CPU per message: the relay's utime +
# stime (/proc/PID/stat, all threads) over the window / deliveries in the window.
# Latency: a delivery's arrival minus its send time (CLOCK_MONOTONIC in the message).
# Loopback only; every process bounded in time; only processes started here are
# stopped, by PID.

set -euo pipefail

RUNS=3
RATES="4 8"
DURATION=10
MODES="direct handoff"
SIZE=112
DAEMON_TOO=0
TRANSPORTS="tcp ws-json"
BUILD=1
OUT=""
PORT=7970
LOCK=""
PROFILE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS="${2:?}"; shift ;;
        --rates) RATES="${2:?}"; shift ;;
        --duration) DURATION="${2:?}"; shift ;;
        --modes) MODES="${2:?}"; shift ;;
        --size) SIZE="${2:?}"; shift ;;
        --daemon) DAEMON_TOO=1 ;;
        --transports) TRANSPORTS="${2:?}"; shift ;;
        --no-build) BUILD=0 ;;
        --out) OUT="${2:?--out needs a directory}"; shift ;;
        --port) PORT="${2:?--port needs a number}"; shift ;;
        --lock) LOCK="${2:?--lock needs a file}"; shift ;;
        --profile) PROFILE=1 ;;
        -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "chat_floor.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
FLOOR="$TARGET_DIR/floor"
if [ "$BUILD" = 1 ]; then
    "$HERE/floor/build.sh" "$FLOOR" >/dev/null
fi
for bin in "$FLOOR/relay" "$FLOOR/load"; do
    [ -x "$bin" ] || { echo "chat_floor.sh: $bin not built (run without --no-build)" >&2; exit 1; }
done
[ -n "$OUT" ] || OUT="$TARGET_DIR/chat-floor/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

RPID=""
stop_relay() {
    [ -n "$RPID" ] || return 0
    for _ in $(seq 50); do kill -0 "$RPID" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$RPID" 2>/dev/null || true
    wait "$RPID" 2>/dev/null || true
    RPID=""
}
trap stop_relay EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# floor_run MODE RATE RUN: one relay, one load; $OUT/floor-MODE-rR-RUN.{json,relay.json,err}
floor_run() {
    local mode="$1" rate="$2" run="$3"
    local base="$OUT/floor-$mode-r$rate-$run"
    : >"$base.json"
    echo "== run $run: floor $mode, rate $rate" >&2
    "$FLOOR/relay" -p "$PORT" -n 5500 -m "$mode" -T $((DURATION + 120)) \
        >"$base.relay.json" 2>"$base.relay.err" &
    RPID=$!
    for _ in $(seq 100); do
        grep -q listening "$base.relay.err" 2>/dev/null && break
        kill -0 "$RPID" 2>/dev/null || break
        sleep 0.05
    done
    local ppid=""
    if [ "$PROFILE" = 1 ] && [ "$DURATION" -gt 5 ]; then
        # ~1 s of connects and 2 s of warm-up first.
        (sleep 4 && exec perf record -q -g -o "$base.perf" -p "$RPID" -- sleep $((DURATION - 4))) \
            >/dev/null 2>&1 &
        ppid=$!
    fi
    timeout --kill-after=5 $((DURATION + 90)) "$FLOOR/load" -p "$PORT" -P "$RPID" -n 5500 \
        -a 500 -k 10 -R "$rate" -s "$SIZE" -W 2 -D "$DURATION" -j 2 -S 8 \
        >"$base.json" 2>"$base.err" || echo "   load failed: $(tail -n 2 "$base.err")" >&2
    [ -z "$ppid" ] || wait "$ppid" 2>/dev/null || true
    stop_relay
    if [ -s "$base.perf" ]; then
        # Inclusive share of the relay's samples under each system call's entry.
        perf report -i "$base.perf" --children --sort sym -g none --stdio 2>/dev/null |
            grep -E '^ +[0-9.]+% +[0-9.]+% .*(__x64_sys_|do_syscall_64|entry_SYSCALL|ksys_|tcp_sendmsg|tcp_recvmsg|tcp_v4_rcv|try_to_wake_up|schedule)' |
            head -n 25 >"$base.profile.txt" || true
        rm -f "$base.perf"
    fi
    sleep 1
}

{
    echo "# chat floor, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -r)"
    echo "# relay/load: $FLOOR (benches/floor, cc -O2); message $SIZE B, ack 40 B"
    echo "# load -n 5500 -a 500 -k 10 -W 2 -D $DURATION -j 2 -S 8 -R RATE, rates: $RATES; modes: $MODES"
    [ "$DAEMON_TOO" = 0 ] || echo "# daemon: benches/chat_cpu.sh --runs 1 --rate R --journal off --transports \"$TRANSPORTS\" --no-build, interleaved"
} | tee "$OUT/report.txt"

for run in $(seq "$RUNS"); do
    for rate in $RATES; do
        [ -z "$LOCK" ] || { exec 9>"$LOCK"; flock 9; }
        echo "# run $run rate $rate: load average $(cut -d' ' -f1-3 /proc/loadavg) at $(date -u +%H:%M:%S)" \
            | tee -a "$OUT/report.txt"
        for mode in $MODES; do
            floor_run "$mode" "$rate" "$run"
        done
        if [ "$DAEMON_TOO" = 1 ]; then
            echo "== run $run: daemon, rate $rate ($TRANSPORTS)" >&2
            "$HERE/chat_cpu.sh" --no-build --runs 1 --rate "$rate" --journal off \
                --transports "$TRANSPORTS" --duration "$DURATION" \
                --out "$OUT/daemon-r$rate-$run" >/dev/null || true
        fi
        [ -z "$LOCK" ] || { flock -u 9; exec 9>&-; }
    done
done

python3 - "$OUT" <<'PY' | tee -a "$OUT/report.txt"
import glob, json, os, re, statistics, sys
out = sys.argv[1]

def load(path):
    try:
        with open(path) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None

rows = {}  # (what, rate) -> [(us, msg/s, p50 ms, p99 ms, extra)]
print("| what | rate | run | msgs in window | CPU-s (window) | kernel | us/msg | delivered/s | p50 ms | p99 ms | syscalls per message |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for path in sorted(glob.glob(os.path.join(out, "floor-*-r*-*.json"))):
    if path.endswith(".relay.json"):
        continue
    m = re.match(r"floor-(\w+)-r([\d.]+)-(\d+)\.json", os.path.basename(path))
    mode, rate, run = m.group(1), m.group(2), int(m.group(3))
    d, r = load(path), load(path[:-5] + ".relay.json")
    if not d:
        print(f"| floor {mode} | {rate} | {run} | n/a | | | | | | | |")
        continue
    lat = d["latency_us"]
    sc = ""
    if r and r.get("frames"):
        f = r["frames"]
        sc = f"{r['reads'] / f:.2f} read, {r['writes'] / f:.2f} write"
        if r.get("eventfd_writes"):
            sc += f", {r['eventfd_writes'] / f:.2f} eventfd write, {r['epoll_waits'] / f:.2f} epoll_wait"
        else:
            sc += f", {r['epoll_waits'] / f:.2f} epoll_wait"
    rows.setdefault((f"floor {mode}", rate), []).append(
        (d["us_per_msg"], d["delivered_per_s"], lat["p50"] / 1000, lat["p99"] / 1000))
    kern = f"{100 * d['relay_sys_s'] / d['relay_cpu_s']:.0f}%" if d.get("relay_cpu_s") else ""
    print(f"| floor {mode} | {rate} | {run} | {d['delivered']:,} | {d['relay_cpu_s']:.2f} | {kern} | "
          f"{d['us_per_msg']:.2f} | {d['delivered_per_s']:,.0f} | {lat['p50'] / 1000:.2f} | "
          f"{lat['p99'] / 1000:.2f} | {sc} |")
for path in sorted(glob.glob(os.path.join(out, "daemon-r*-*", "chat-*.json"))):
    m = re.match(r"daemon-r([\d.]+)-(\d+)", os.path.basename(os.path.dirname(path)))
    rate, run = m.group(1), int(m.group(2))
    t = re.match(r"chat-\w+-(.+)-journal_", os.path.basename(path)).group(1)
    d = load(path)
    if not d or not d.get("server_cpu"):
        print(f"| daemon {t} | {rate} | {run} | n/a | | | | | | | |")
        continue
    cpu, lat = d["server_cpu"], d.get("latency_us") or {}
    rows.setdefault((f"daemon {t}", rate), []).append(
        (cpu["us_per_message"], d["messages_per_s"], lat.get("p50", 0) / 1000, lat.get("p99", 0) / 1000))
    print(f"| daemon {t} | {rate} | {run} | {d['messages']:,} | {cpu['window_cpu_s']:.2f} | | "
          f"{cpu['us_per_message']:.2f} | {d['messages_per_s']:,.0f} | {lat.get('p50', 0) / 1000:.2f} | "
          f"{lat.get('p99', 0) / 1000:.2f} | |")
profiles = []
for path in sorted(glob.glob(os.path.join(out, "floor-*.profile.txt"))):
    m = re.match(r"floor-(\w+)-r([\d.]+)-(\d+)\.profile\.txt", os.path.basename(path))
    share = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 4 and f[0].endswith("%"):
            share.setdefault(f[3], float(f[0][:-1]))
    keys = [("ksys_write", "write"), ("tcp_sendmsg", "tcp_sendmsg"),
            ("tcp_v4_rcv", "receiver's tcp_v4_rcv (inside the sends)"), ("ksys_read", "read"),
            ("__x64_sys_epoll_wait", "epoll_wait"), ("schedule", "schedule")]
    parts = [f"{label} {share[k]:.0f}%" for k, label in keys if k in share]
    if parts:
        profiles.append(f"| floor {m.group(1)} | {m.group(2)} | {m.group(3)} | {', '.join(parts)} |")
if profiles:
    print()
    print("| what | rate | run | share of the relay's samples under (perf record -g, children) |")
    print("|---|---:|---:|---|")
    print("\n".join(profiles))
print()
print("| what | offered msg/s | runs | us/msg median (min-max) | delivered/s median | p50 ms median | p99 ms median (min-max) |")
print("|---|---:|---:|---|---:|---:|---|")
for (what, rate), v in sorted(rows.items(), key=lambda kv: (float(kv[0][1]), kv[0][0])):
    us = [x[0] for x in v]; ps = [x[1] for x in v]; p50 = [x[2] for x in v]; p99 = [x[3] for x in v]
    print(f"| {what} | {5000 * float(rate):,.0f} | {len(v)} | {statistics.median(us):.2f} "
          f"({min(us):.2f}-{max(us):.2f}) | {statistics.median(ps):,.0f} | {statistics.median(p50):.2f} | "
          f"{statistics.median(p99):.2f} ({min(p99):.2f}-{max(p99):.2f}) |")
PY
echo "raw results: $OUT" >&2
