#!/usr/bin/env bash
# Switchboard's echo listener against conventional echo servers, under the same storm
# scenarios, interleaved, on this machine (loopback only).
#
# Usage:
#   benches/compare.sh [--quick] [--runs N] [--no-build] [--out DIR] [--keep]
#     --quick     small, short runs (a smoke test of the procedure, not figures)
#     --runs N    repetitions of every scenario, each one ours then every peer [3]
#     --no-build  use the binaries already built
#     --out DIR   where to keep JSON results, storm's stderr and server logs
#     --keep      keep the scratch directory (temp configs, daemon state)
#     --report-only  run nothing: print the report of the results already in --out DIR
#                 (same PEERS, --runs and --quick as the run that made them)
#   PEERS='gnet=/work/shared/peers/gnet-echo -port {port} -loops 2;tokio=default' benches/compare.sh
#               several peers in one run: `NAME=COMMAND` entries separated by `;`
#               (NAME: letters, digits, `_`, `.`; COMMAND `default` is the tokio peer);
#               the report has a column and a ratio for each
#   PEER_CMD='/path/to/gnet-echo -port {port}' benches/compare.sh   # one peer, named `peer`
#               (used when PEERS is not set; neither: PEERS='tokio=default')
#   WS_PEER_CMD='/path/to/ws-server --port {port}' benches/compare.sh   # the WebSocket peer
#   WS_ONLY=1 benches/compare.sh    # only the WebSocket part;  TCP_ONLY=1: only the TCP part
#   SCENARIOS='flood connect pingpong' benches/compare.sh   # only these TCP scenarios, in
#               this order [idle flood pingpong connect]
#   STORM_BIN=/path/to/storm benches/compare.sh     # a storm built elsewhere
#   PROFILE=stat benches/compare.sh   # during each flood, `perf stat -p SERVER` (task-clock,
#               context switches, system calls) for FLOOD_SECS-5 s from 3 s after the
#               server started; PROFILE=record: `perf record -g` the same way, with
#               `perf report` summaries beside the results. perf costs the server CPU:
#               use the figures of such a run for where time goes, not for the table.
#
# What it does:
#   1. Builds `cargo build --release --workspace --bins` (the daemon and storm, a
#      workspace package of its own) and, when a peer is `default`, the tokio peer
#      (`cargo build --release --manifest-path benches/peers/tokio-echo/Cargo.toml`).
#      --no-build skips this.
#   2. N times: for each scenario, starts a fresh server, runs storm against it, stops
#      it; first ours (the switchboard daemon with a temp config enabling
#      [listeners.echo]), then each peer in PEERS order (`{port}` is replaced by a
#      free port). A peer command is exec'd, so its PID is the server's own (RSS is
#      read from it): give one command, not a pipeline.
#        idle      storm --scenario idle --connections 19000 --procs 2 --duration 10
#        flood     storm --scenario echo --mode flood --size 1024 --connections 1000 --duration 10
#        pingpong  storm --scenario echo --mode pingpong --rate 1 --connections 10000 --duration 20
#        connect   storm --scenario connect --connections 15000 --procs 2   (a connect storm:
#                  as fast as storm can, 1,000 in flight per process; the connections stay
#                  open until all are made, then storm closes them)
#      each with --target 127.0.0.1:PORT --raw --source-addrs 127.0.0.2-127.0.0.9
#      --server-pid PID --json. --quick shrinks them to 2,000 idle (5 s), a 3 s flood,
#      2,000 x 1 msg/s for 5 s and 2,000 connects: a smoke test of the whole procedure,
#      not figures.
#      Then the WebSocket part: the same scenarios with `--transport ws` (storm upgrades
#      each connection, then sends masked binary messages) against our echo listener
#      with `websocket = true` and the WebSocket peer (WS_PEER_CMD, default
#      benches/peers/ws-echo, tokio-tungstenite, built unless WS_PEER_CMD is set) twice:
#      its default read buffer and `--read-buffer 4096`. Idle holds 10,000 connections
#      (also as plain TCP on our echo listener, the binary connection to compare with);
#      --quick shrinks it like the TCP part.
#   3. Prints the machine (nproc, CPU, kernel, date, load average) and a Markdown table:
#      per figure, the median over the N runs of ours and of each peer, and for each
#      peer the ratio of the medians ours / peer with the range of the N paired
#      ratios (run i of ours against run i of that peer), read from storm's --json.
#
# The run is bounded (every storm run has a timeout; a server that does not stop on
# SIGTERM is killed), talks only to 127.0.0.0/8, and kills only the processes it
# started, by PID, when it exits for any reason. Raw JSON, storm's stderr and the
# servers' logs are kept in --out (default target/compare/DATE-TIME).
#
# Why 19,000 idle connections: the per-process open-file limit here is 20,000 and cannot
# be raised, so the server can hold no more; storm spreads the client side over two
# processes. The script raises its own soft RLIMIT_NOFILE to the hard limit so the
# servers it starts inherit it (the tokio peer also does so itself).

set -euo pipefail

usage() { sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; }

QUICK=0
REPORT_ONLY=0
RUNS=3
BUILD=1
KEEP=0
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --runs) RUNS="${2:?--runs needs a number}"; shift ;;
        --no-build) BUILD=0 ;;
        --report-only) REPORT_ONLY=1; BUILD=0 ;;
        --keep) KEEP=1 ;;
        --out) OUT="${2:?--out needs a directory}"; shift ;;
        --out=*) OUT="${1#--out=}" ;;
        -h|--help) usage; exit 0 ;;
        *) echo "compare.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

case "$RUNS" in ''|*[!0-9]*|0) echo "compare.sh: --runs needs a positive number" >&2; exit 2 ;; esac
if [ "$REPORT_ONLY" = 1 ] && [ -z "$OUT" ]; then
    echo "compare.sh: --report-only needs --out DIR" >&2
    exit 2
fi

# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# The peers are Cargo projects of their own, built into a directory of their own
# under the target directory (so CARGO_TARGET_DIR is honoured and nothing is built
# in the source tree).
PEERS_TARGET="$TARGET_DIR/peers"
TOKIO_PEER="$PEERS_TARGET/release/tokio-echo"
WS_PEER="$PEERS_TARGET/release/ws-echo"
SOURCES="127.0.0.2-127.0.0.9"

if [ "$QUICK" = 1 ]; then
    IDLE_N=2000;  IDLE_PROCS=2; IDLE_SECS=5
    FLOOD_N=1000; FLOOD_SECS=3
    PP_N=2000;    PP_SECS=5
    WS_IDLE_N=2000
    CONNECT_N=2000
else
    IDLE_N=19000; IDLE_PROCS=2; IDLE_SECS=10
    FLOOD_N=1000; FLOOD_SECS=10
    PP_N=10000;   PP_SECS=20
    WS_IDLE_N=10000
    CONNECT_N=15000
fi
CONNECT_PROCS=2
SCENARIOS="${SCENARIOS:-idle flood pingpong connect}"
case "${PROFILE:-}" in
    ''|stat|record) ;;
    *) echo "compare.sh: PROFILE is stat or record: $PROFILE" >&2; exit 2 ;;
esac
PERF_EVENTS="task-clock,context-switches,cpu-migrations"
PERF_EVENTS+="$(printf ',syscalls:sys_enter_%s' read recvfrom readv write writev sendto sendmsg \
    epoll_wait epoll_pwait epoll_pwait2 epoll_ctl futex accept4 io_uring_enter)"
for _s in $SCENARIOS; do
    case "$_s" in
        idle|flood|pingpong|connect) ;;
        *) echo "compare.sh: SCENARIOS takes idle, flood, pingpong, connect: $_s" >&2; exit 2 ;;
    esac
done
FLOOD_SIZE=1024
PP_SIZE=64

# ---------------------------------------------------------------------------------
# Processes we started: killed by PID on exit, whatever the exit.
# ---------------------------------------------------------------------------------
PIDS=()
SCRATCH="$(mktemp -d -t switchboard-compare.XXXXXX)"

stop_pid() { # PID [grace seconds]
    local pid="$1" grace="${2:-8}" i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "compare.sh: PID $pid still running ${grace} s after SIGTERM; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        stop_pid "$pid" 3
    done
    if [ "$KEEP" = 1 ]; then
        echo "compare.sh: scratch (configs, daemon state) kept in $SCRATCH" >&2
    else
        rm -rf "$SCRATCH"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------
# Peers: PEERS ("NAME=CMD;NAME=CMD", CMD `default` = the tokio peer), else PEER_CMD as
# one peer named `peer`, else the tokio peer alone.
# ---------------------------------------------------------------------------------
if [ -z "${PEERS:-}" ]; then
    if [ -n "${PEER_CMD:-}" ]; then
        PEERS="peer=$PEER_CMD"
    else
        PEERS="tokio=default"
    fi
fi
PEER_NAMES=()
declare -A PEER_CMDS=()
NEED_TOKIO=0
IFS=';' read -r -a _entries <<<"$PEERS"
for _entry in "${_entries[@]}"; do
    _entry="${_entry#"${_entry%%[![:space:]]*}"}" # leading blanks
    [ -n "$_entry" ] || continue
    _name="${_entry%%=*}"
    _cmd="${_entry#*=}"
    if [ "$_name" = "$_entry" ] || ! [[ "$_name" =~ ^[A-Za-z0-9_.]+$ ]]; then
        echo "compare.sh: PEERS entries are NAME=COMMAND (NAME of letters, digits, _ and .): $_entry" >&2
        exit 2
    fi
    case "$_name" in
        ours|ours-ws|ws-peer|ws-peer-4k) echo "compare.sh: peer name $_name is taken" >&2; exit 2 ;;
    esac
    [ -z "${PEER_CMDS[$_name]+x}" ] || { echo "compare.sh: peer $_name given twice" >&2; exit 2; }
    if [ "$_cmd" = default ]; then
        NEED_TOKIO=1
        # (Not a default inside `${...}`: its first `}` would end the expansion.)
        _cmd="$TOKIO_PEER --port {port}"
    fi
    case "$_cmd" in
        *"{port}"*) ;;
        *) echo "compare.sh: the command of peer $_name must contain {port}: $_cmd" >&2; exit 2 ;;
    esac
    PEER_NAMES+=("$_name")
    PEER_CMDS[$_name]="$_cmd"
done
[ "${#PEER_NAMES[@]}" -gt 0 ] || { echo "compare.sh: PEERS names no peer" >&2; exit 2; }

# ---------------------------------------------------------------------------------
# Build.
# ---------------------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
    echo "== building (cargo build --release --workspace --bins)" >&2
    cargo build --release --workspace --bins
    if [ "$NEED_TOKIO" = 1 ]; then
        echo "== building the tokio peer" >&2
        cargo build --release --manifest-path benches/peers/tokio-echo/Cargo.toml \
            --target-dir "$PEERS_TARGET"
    fi
    if [ -z "${WS_PEER_CMD:-}" ] && [ "${TCP_ONLY:-0}" != 1 ]; then
        echo "== building the WebSocket peer" >&2
        cargo build --release --manifest-path benches/peers/ws-echo/Cargo.toml \
            --target-dir "$PEERS_TARGET"
    fi
fi
if [ -z "${WS_PEER_CMD:-}" ]; then
    WS_PEER_CMD="$WS_PEER --port {port}"
fi
case "$WS_PEER_CMD" in
    *"{port}"*) ;;
    *) echo "compare.sh: WS_PEER_CMD must contain {port}: $WS_PEER_CMD" >&2; exit 2 ;;
esac
for bin in "$DAEMON" "$STORM"; do
    [ "$REPORT_ONLY" = 1 ] || [ -x "$bin" ] ||
        { echo "compare.sh: $bin not built (run without --no-build)" >&2; exit 1; }
done

if [ -z "$OUT" ]; then
    OUT="$TARGET_DIR/compare/$(date +%Y%m%d-%H%M%S)"
fi
mkdir -p "$OUT"

# Let the servers we start hold as many sockets as this machine allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------------------------
# Servers.
# ---------------------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until 127.0.0.1:PORT accepts, while PID lives; at most 20 s.
wait_listening() { # PORT PID
    local port="$1" pid="$2" i
    for ((i = 0; i < 200; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

SERVER_PID=""
SERVER_PORT=""

# Starts server WHICH on a fresh port; sets SERVER_PID and SERVER_PORT. WHICH: ours
# (raw echo), a peer's name (its command from PEERS), ours-ws (echo listener with
# websocket = true), ws-peer (WS_PEER_CMD), ws-peer-4k (WS_PEER_CMD --read-buffer 4096).
start_server() { # WHICH LOG
    local which="$1" log="$2" websocket=false
    SERVER_PORT="$(free_port)"
    [ "$which" = ours-ws ] && websocket=true
    if [ "$which" = ours ] || [ "$which" = ours-ws ]; then
        local dir="$SCRATCH/ours-$SERVER_PORT"
        mkdir -p "$dir"
        # The client listener on an unused port; the echo listener on ours; timeouts
        # long enough that nothing is closed as idle during a run.
        echo_config "$dir/state" "$SERVER_PORT" "$websocket" 127.0.0.1:0 >"$dir/switchboard.toml"
        "$DAEMON" run --config "$dir/switchboard.toml" >"$log" 2>&1 &
    else
        local cmd
        case "$which" in
            ws-peer) cmd="${WS_PEER_CMD//\{port\}/$SERVER_PORT}" ;;
            ws-peer-4k) cmd="${WS_PEER_CMD//\{port\}/$SERVER_PORT} --read-buffer 4096" ;;
            *) cmd="${PEER_CMDS[$which]//\{port\}/$SERVER_PORT}" ;;
        esac
        echo "$cmd" >"$log"
        bash -c "exec $cmd" >>"$log" 2>&1 &
    fi
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    if ! wait_listening "$SERVER_PORT" "$SERVER_PID"; then
        echo "compare.sh: $which server did not listen on 127.0.0.1:$SERVER_PORT; its log:" >&2
        tail -n 20 "$log" >&2 || true
        stop_server
        return 1
    fi
    sleep 1 # let start-up settle before storm samples the server's RSS
}

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    stop_pid "$SERVER_PID" 8
    local keep=() pid
    for pid in "${PIDS[@]}"; do
        [ "$pid" = "$SERVER_PID" ] || keep+=("$pid")
    done
    PIDS=("${keep[@]+"${keep[@]}"}")
    SERVER_PID=""
}

# CPU time of every thread of PID so far, in ns (/proc/PID/task/*/schedstat: exact,
# unlike the 10 ms ticks of /proc/PID/stat).
server_cpu_ns() { # PID
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%d", s }'
}

# One storm run against one server: NAME WHICH SECS RUN storm-args...
# Writes $OUT/NAME-WHICH-RUN.json (empty when the run failed) and .err.
run_case() {
    local name="$1" which="$2" secs="$3" run="$4"
    shift 4
    local base="$OUT/$name-$which-$run"
    : >"$base.json"
    echo "== run $run/$RUNS: $name on $which: storm $*" >&2
    if ! start_server "$which" "$base.server.log"; then
        echo "   $which server failed to start" >&2
        return 0
    fi
    local rc=0 ppid="" cpu0
    cpu0="$(server_cpu_ns "$SERVER_PID")"
    if [ "$name" = flood ] && [ -n "${PROFILE:-}" ] && [ "$secs" -gt 5 ]; then
        local window=$((secs - 5))
        case "$PROFILE" in
            stat) (sleep 3 && exec perf stat -x, -o "$base.perf" -p "$SERVER_PID" \
                -e "$PERF_EVENTS" -- sleep "$window") 2>/dev/null & ;;
            record) (sleep 3 && exec perf record -q -g -o "$base.perf.data" -p "$SERVER_PID" \
                -- sleep "$window") >/dev/null 2>&1 & ;;
        esac
        ppid=$!
        echo "$window" >"$base.perf-secs"
    fi
    timeout --kill-after=10 "$((secs + 240))" \
        "$STORM" --target "127.0.0.1:$SERVER_PORT" --raw --source-addrs "$SOURCES" \
        --server-pid "$SERVER_PID" --json --quiet "$@" \
        >"$base.json" 2>"$base.err" || rc=$?
    # The server's CPU over the whole storm run (connects included), for the connect
    # storm's CPU per connection.
    echo "$cpu0 $(server_cpu_ns "$SERVER_PID")" >"$base.cpu"
    [ -z "$ppid" ] || wait "$ppid" 2>/dev/null || true
    if [ -f "$base.perf.data" ]; then
        perf report -i "$base.perf.data" --no-children --sort dso --stdio 2>/dev/null |
            grep -v '^#' | grep -v '^$' | head -n 12 >"$base.perf-dso.txt" || true
        perf report -i "$base.perf.data" --no-children --sort dso,sym --stdio -g none \
            2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 40 >"$base.perf-sym.txt" || true
        perf report -i "$base.perf.data" --children --sort sym --stdio -g none \
            2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 40 >"$base.perf-children.txt" || true
    fi
    stop_server
    if [ "$rc" != 0 ]; then
        echo "   storm exited $rc; last lines of $base.err:" >&2
        tail -n 5 "$base.err" | sed 's/^/   /' >&2
    fi
    if ! python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$base.json" 2>/dev/null; then
        echo "   no JSON result from storm" >&2
        : >"$base.json"
    fi
    sleep 1
}

# ---------------------------------------------------------------------------------
# The runs: N rounds; in each, every scenario on ours, then on each peer.
# ---------------------------------------------------------------------------------
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
# The source revision at the start (the tree may change while the runs go on).
rev="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    rev="$rev+dirty"
fi
[ "$REPORT_ONLY" = 0 ] || LOAD_BEFORE="n/a (report of an earlier run)"
for run in $(seq "$RUNS"); do
    [ "$REPORT_ONLY" = 0 ] || break
    if [ "${WS_ONLY:-0}" != 1 ]; then
        for scen in $SCENARIOS; do
            for which in ours "${PEER_NAMES[@]}"; do
                case "$scen" in
                    idle) run_case idle "$which" "$IDLE_SECS" "$run" --scenario idle \
                        --connections "$IDLE_N" --procs "$IDLE_PROCS" --duration "$IDLE_SECS" ;;
                    flood) run_case flood "$which" "$FLOOD_SECS" "$run" --scenario echo \
                        --mode flood --size "$FLOOD_SIZE" --connections "$FLOOD_N" \
                        --duration "$FLOOD_SECS" ;;
                    pingpong) run_case pingpong "$which" "$PP_SECS" "$run" --scenario echo \
                        --mode pingpong --rate 1 --size "$PP_SIZE" --connections "$PP_N" \
                        --duration "$PP_SECS" ;;
                    connect) run_case connect "$which" 0 "$run" --scenario connect \
                        --connections "$CONNECT_N" --procs "$CONNECT_PROCS" ;;
                esac
            done
        done
    fi
    if [ "${TCP_ONLY:-0}" != 1 ]; then
        # The binary connection to compare an idle WebSocket with, at the same count.
        run_case ws-idle ours "$IDLE_SECS" "$run" --scenario idle --connections "$WS_IDLE_N" \
            --procs "$IDLE_PROCS" --duration "$IDLE_SECS"
        for which in ours-ws ws-peer ws-peer-4k; do
            run_case ws-idle "$which" "$IDLE_SECS" "$run" --transport ws --scenario idle \
                --connections "$WS_IDLE_N" --procs "$IDLE_PROCS" --duration "$IDLE_SECS"
        done
        for which in ours-ws ws-peer ws-peer-4k; do
            run_case ws-flood "$which" "$FLOOD_SECS" "$run" --transport ws --scenario echo \
                --mode flood --size "$FLOOD_SIZE" --connections "$FLOOD_N" --duration "$FLOOD_SECS"
        done
        for which in ours-ws ws-peer ws-peer-4k; do
            run_case ws-pingpong "$which" "$PP_SECS" "$run" --transport ws --scenario echo \
                --mode pingpong --rate 1 --size "$PP_SIZE" --connections "$PP_N" --duration "$PP_SECS"
        done
    fi
done

# ---------------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------------
cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
mem="$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
{
    echo
    echo "## switchboard echo vs peers ($([ "$QUICK" = 1 ] && echo 'QUICK smoke run' || echo 'full run'), $RUNS runs)"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- machine: nproc $(nproc), ${cpu:-unknown CPU}, $mem, kernel $(uname -r), open files $(ulimit -n)"
    echo "- ours: switchboard $rev, [listeners.echo], default reactor/worker threads"
    for name in "${PEER_NAMES[@]}"; do
        echo "- peer $name: ${PEER_CMDS[$name]//\{port\}/PORT}"
    done
    if [ "${TCP_ONLY:-0}" != 1 ]; then
        echo "- WebSocket peer: ${WS_PEER_CMD//\{port\}/PORT} (and with --read-buffer 4096);" \
            "ours: [listeners.echo] websocket = true; storm --transport ws; idle at $WS_IDLE_N"
    fi
    echo "- idle: $IDLE_N connections, $IDLE_PROCS client procs, held ${IDLE_SECS} s;" \
        "flood: $FLOOD_N x ${FLOOD_SIZE} B, ${FLOOD_SECS} s;" \
        "pingpong: $PP_N x 1 msg/s of ${PP_SIZE} B, ${PP_SECS} s;" \
        "connect: $CONNECT_N connections, $CONNECT_PROCS client procs"
    echo "- TCP scenarios run: $SCENARIOS"
    echo "- each scenario $RUNS times, interleaved (ours, then each peer, per round); medians shown"
    echo "- raw results: $OUT"
    echo
} | tee "$OUT/report.md"

python3 - "$OUT" "$RUNS" "${PEER_NAMES[@]}" <<'PY' | tee -a "$OUT/report.md"
import json, os, statistics, sys

out, runs, peers = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

def load(name, which, run):
    try:
        with open(os.path.join(out, f"{name}-{which}-{run}.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def get(d, path):
    for key in path.split("."):
        if not isinstance(d, dict) or key not in d or d[key] is None:
            return None
        d = d[key]
    return d if isinstance(d, (int, float)) else None

def errors(d):
    # storm's `errors` may be a count or an object of counts by kind.
    if d is None:
        return None
    e = d.get("errors")
    if isinstance(e, dict):
        return sum(v for v in e.values() if isinstance(v, (int, float)))
    return e if isinstance(e, (int, float)) else None

def cpu_per_connection(name, which, run):
    """The server's CPU (µs) over the storm run per connection storm made."""
    try:
        a, b = (int(x) for x in open(os.path.join(out, f"{name}-{which}-{run}.cpu")).read().split())
    except (OSError, ValueError):
        return None
    d = load(name, which, run)
    n = get(d, "connections") if d else None
    return (b - a) / 1000 / n if n and b >= a else None

def value(d, path):
    return errors(d) if path == "errors" else get(d, path)

def fmt(v, unit):
    if v is None:
        return "n/a"
    if isinstance(v, float) and v.is_integer() and unit in ("", "B"):
        v = int(v)                         # a median of counts
    if unit == "MB":
        return f"{v / 1024:.1f}"          # from kB
    if unit == "MB/s":
        return f"{v / 1e6:.1f}"           # from bytes/s
    if unit == "ms":
        return f"{v / 1000:.2f}"          # from microseconds
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}" if isinstance(v, float) else str(v)

def series(name, which, path):
    """The figure of every run, None where a run has no result."""
    if path == "cpu_per_connection":
        return [cpu_per_connection(name, which, r) for r in range(1, runs + 1)]
    return [value(load(name, which, r), path) for r in range(1, runs + 1)]

def median(vs):
    vs = [v for v in vs if v is not None]
    return statistics.median(vs) if vs else None

def ratio_cell(ours, peer):
    """Ratio of the medians, then the range of the paired per-run ratios."""
    a, b = median(ours), median(peer)
    if a is None or b is None:
        return "n/a"
    if b == 0:
        return "=" if a == 0 else "n/a"
    cell = f"{a / b:.2f}"
    pairs = [x / y for x, y in zip(ours, peer) if x is not None and y]
    if len(pairs) > 1:
        cell += f" ({min(pairs):.2f}-{max(pairs):.2f})"
    return cell

# (scenario, label, json path, unit, better: "lower" / "higher" / "")
ROWS = [
    ("idle", "RSS growth per idle connection (B)", "server_rss.growth_per_connection_bytes", "B", "lower"),
    ("idle", "server peak RSS (MB)", "server_rss.peak_kb", "MB", "lower"),
    ("idle", "connections opened per s", "connect_rate_per_s", "", "higher"),
    ("idle", "connect latency p50 (ms)", "connect_latency_us.p50", "ms", "lower"),
    ("idle", "connect latency p99 (ms)", "connect_latency_us.p99", "ms", "lower"),
    ("idle", "connections open at the end", "connections_open_at_end", "", "higher"),
    ("idle", "errors", "errors", "", "lower"),
    ("flood", "messages per s (1 KiB)", "messages_per_s", "", "higher"),
    ("flood", "throughput (MB/s)", "bytes_per_s", "MB/s", "higher"),
    ("flood", "latency p50 (ms)", "latency_us.p50", "ms", "lower"),
    ("flood", "latency p99 (ms)", "latency_us.p99", "ms", "lower"),
    ("flood", "server CPU per message (µs)", "server_cpu.us_per_message", "", "lower"),
    ("flood", "server peak RSS (MB)", "server_rss.peak_kb", "MB", "lower"),
    ("flood", "errors", "errors", "", "lower"),
    ("pingpong", "messages per s", "messages_per_s", "", "higher"),
    ("pingpong", "latency p50 (ms)", "latency_us.p50", "ms", "lower"),
    ("pingpong", "latency p90 (ms)", "latency_us.p90", "ms", "lower"),
    ("pingpong", "latency p99 (ms)", "latency_us.p99", "ms", "lower"),
    ("pingpong", "latency p99.9 (ms)", "latency_us.p999", "ms", "lower"),
    ("pingpong", "latency max (ms)", "latency_us.max", "ms", "lower"),
    ("pingpong", "server peak RSS (MB)", "server_rss.peak_kb", "MB", "lower"),
    ("pingpong", "errors", "errors", "", "lower"),
    ("connect", "connections opened per s", "connect_rate_per_s", "", "higher"),
    ("connect", "connect latency p50 (ms)", "connect_latency_us.p50", "ms", "lower"),
    ("connect", "connect latency p99 (ms)", "connect_latency_us.p99", "ms", "lower"),
    ("connect", "server CPU per connection (µs)", "cpu_per_connection", "", "lower"),
    ("connect", "server peak RSS (MB)", "server_rss.peak_kb", "MB", "lower"),
    ("connect", "errors", "errors", "", "lower"),
]

missing = []
def note_missing(name, which):
    for r in range(1, runs + 1):
        if load(name, which, r) is None and (name, which, r) not in missing:
            missing.append((name, which, r))

tcp_ran = any(load(scen, w, r) is not None for scen in ("idle", "flood", "pingpong", "connect")
              for w in ["ours"] + peers for r in range(1, runs + 1))
if tcp_ran:
    head = "| scenario | figure | ours | " + " | ".join(peers) + " | " + \
        " | ".join(f"ours / {p}" for p in peers) + " | better |"
    print(head)
    print("|---|---|---:|" + "---:|" * (2 * len(peers)) + "---|")
    ran = {scen for scen in ("idle", "flood", "pingpong", "connect")
           if any(load(scen, w, r) is not None for w in ["ours"] + peers
                  for r in range(1, runs + 1))}
    for scen, label, path, unit, better in ROWS:
        if scen not in ran:
            continue
        ours = series(scen, "ours", path)
        note_missing(scen, "ours")
        cols, ratios = [], []
        for p in peers:
            note_missing(scen, p)
            ps = series(scen, p, path)
            cols.append(fmt(median(ps), unit))
            ratios.append(ratio_cell(ours, ps))
        print(f"| {scen} | {label} | {fmt(median(ours), unit)} | " + " | ".join(cols) + " | " +
              " | ".join(ratios) + f" | {better} |")
    print()
    print("Medians over the runs. Ratios are ours / peer of the medians, with the range of the")
    print("per-run ratios (run i of ours against run i of the peer) in parentheses: below 1 is")
    print("better for `lower` figures, above 1 for `higher`.")

# The WebSocket part: ours (websocket = true), the binary connection beside it for idle,
# and the WebSocket peer with its default and a 4 KiB read buffer.
WS_COLS = ["ours-ws", "ours", "ws-peer", "ws-peer-4k"]
if any(load(f"ws-{s}", w, r) is not None for s in ("idle", "flood", "pingpong")
       for w in WS_COLS for r in range(1, runs + 1)):
    print()
    print("| WebSocket | figure | ours (WS) | ours (TCP) | peer | peer 4 KiB | ours / peer | ours / peer 4 KiB | better |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for scen, label, path, unit, better in ROWS:
        if scen == "connect":
            continue  # the WebSocket part has no connect storm of its own
        wscen = f"ws-{scen}"
        vals = {w: series(wscen, w, path) for w in WS_COLS}
        for w in WS_COLS:
            if w != "ours" or scen == "idle":
                note_missing(wscen, w)
        a = vals["ours-ws"]
        tcp = fmt(median(vals["ours"]), unit) if scen == "idle" else ""
        print(f"| {scen} | {label} | {fmt(median(a), unit)} | {tcp} | "
              f"{fmt(median(vals['ws-peer']), unit)} | {fmt(median(vals['ws-peer-4k']), unit)} | "
              f"{ratio_cell(a, vals['ws-peer'])} | {ratio_cell(a, vals['ws-peer-4k'])} | {better} |")
    print()
    print("WebSocket rows: storm --transport ws (binary messages); ours (TCP) is a plain echo")
    print("connection on the same listener type at the same count, for idle only.")
# PROFILE=stat: the servers' CPU and system calls per echoed message during the flood.
stats = []
for which in ["ours"] + peers:
    for r in range(1, runs + 1):
        base = os.path.join(out, f"flood-{which}-{r}")
        try:
            lines = open(base + ".perf").read().splitlines()
            secs = float(open(base + ".perf-secs").read())
        except (OSError, ValueError):
            continue
        counts = {}
        for line in lines:
            f = line.split(",")
            if len(f) > 2 and f[0].replace(".", "", 1).isdigit():
                counts[f[2]] = float(f[0])
        d = load("flood", which, r)
        rate = get(d, "messages_per_s") if d else None
        if not counts or not rate:
            continue
        stats.append((which, r, secs, rate, counts))
if stats:
    print()
    print("| flood, perf stat | run | msg/s (this run) | CPU µs per msg | cores busy | context switches per 1,000 msgs | system calls per 1,000 msgs |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for which, r, secs, rate, counts in stats:
        msgs = rate * secs
        cpu_ms = counts.get("task-clock", 0.0)           # msec
        sc = {k[len("syscalls:sys_enter_"):]: v for k, v in counts.items()
              if k.startswith("syscalls:sys_enter_") and v > 0}
        calls = ", ".join(f"{k} {v * 1000 / msgs:.0f}" for k, v in
                          sorted(sc.items(), key=lambda kv: -kv[1]))
        print(f"| {which} | {r} | {rate:,.0f} | {cpu_ms * 1000 / msgs:.2f} | {cpu_ms / 1000 / secs:.2f} | "
              f"{counts.get('context-switches', 0) * 1000 / msgs:.2f} | {calls} |")
    print()
    print("perf stat -p SERVER for the seconds shown in *.perf-secs inside each flood; messages are")
    print("that run's msg/s times those seconds. perf slows the server: these runs are not in the table.")
for scen, which, r in missing:
    print(f"NOTE: no result for {scen} on {which}, run {r}: see {out}/{scen}-{which}-{r}.err")
PY
