# shellcheck shell=bash
# Shared by the bench scripts (sourced after their argument parsing): where the
# binaries are, building and checking them, a scratch directory, and stopping the
# daemon a script started (by the PID it recorded in DPID, never by name).
#
# Sets ROOT (and cd's there), TARGET_DIR, DAEMON (or $DAEMON_BIN), STORM (or
# $STORM_BIN), DPID="". Defines bench_binaries, bench_scratch, stop_daemon and
# echo_config.

ROOT="$(cd "$(dirname "${BASH_SOURCE[1]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
DAEMON="${DAEMON_BIN:-$TARGET_DIR/release/switchboard}"
STORM="${STORM_BIN:-$TARGET_DIR/release/storm}"
DPID=""
# Daemons started here run as systemd/switchboard.service runs them: mimalloc's purge
# delay is the daemon's own (10 ms, set in code) unless MIMALLOC_PURGE_DELAY is set.
# (A baseline binary from before 2026-12-07 needs MIMALLOC_PURGE_DELAY=10 to match.)

# bench_binaries NAME BUILD BIN...: builds the release binaries when BUILD is 1, then
# checks that every BIN is there.
bench_binaries() {
    local name="$1" build="$2"
    shift 2
    if [ "$build" = 1 ]; then
        cargo build --release --workspace --bins
    fi
    for bin in "$@"; do
        [ -x "$bin" ] || { echo "$name: $bin not built (run without --no-build)" >&2; exit 1; }
    done
}

# bench_scratch NAME: a new scratch directory in SCRATCH, file descriptors raised to
# the hard limit.
bench_scratch() {
    SCRATCH="$(mktemp -d -t "switchboard-$1.XXXXXX")"
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

# bench_cert DIR NAME: a throwaway CA (DIR/ca.pem, common name NAME) and a P-256
# certificate for localhost and 127.0.0.1 signed by it (DIR/cert.pem, DIR/key.pem).
bench_cert() {
    (
        cd "$1"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout ca.key -out ca.pem -days 2 -subj "/CN=$2" 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout key.pem -out leaf.csr -subj /CN=localhost 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >ext.cnf
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out cert.pem -days 2 -extfile ext.cnf 2>/dev/null
    )
}

# wait_daemon STATE_DIR PORT LOG: waits (20 s at most) until the daemon in DPID has
# written its dev secret in STATE_DIR and listens on PORT, then one second more; 1
# (with the log's tail) when it exited or never got there.
wait_daemon() {
    local dir="$1" port="$2" log="$3"
    for _ in $(seq 200); do
        kill -0 "$DPID" 2>/dev/null || { tail "$log" >&2; return 1; }
        if [ -s "$dir/dev-secret" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            sleep 1
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# stop_daemon: SIGTERM to DPID, SIGKILL after 8 s, then forget it.
stop_daemon() {
    [ -n "$DPID" ] || return 0
    kill -TERM "$DPID" 2>/dev/null || true
    for _ in $(seq 80); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$DPID" 2>/dev/null || true
    wait "$DPID" 2>/dev/null || true
    DPID=""
}

# echo_config STATE_DIR PORT WEBSOCKET ADMIN_ADDR: the daemon config of the echo
# benchmarks on stdout: the echo listener on PORT (the client listener on an unused
# port), timeouts long enough that nothing is closed as idle during a run. Callers
# append their own sections ([reactor], ...).
echo_config() {
    cat <<EOF
state_dir = "$1"

[listeners.client]
addr = "127.0.0.1:0"

[listeners.echo]
addr = "127.0.0.1:$2"
websocket = $3

[admin]
addr = "$4"

[heartbeat]
interval = "1m"
idle_timeout = "10m"
handshake_timeout = "1m"

[log]
level = "warn"
EOF
}
