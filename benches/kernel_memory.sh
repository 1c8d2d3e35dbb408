#!/usr/bin/env bash
# Kernel memory per idle TCP socket, for capacity planning (tuning/README.md).
#
# Starts the release daemon with its echo listener, opens N idle loopback connections
# with `storm --scenario idle --raw`, and compares, before and while they are held:
#   - /proc/meminfo Slab (socket, inode, dentry, epoll and file objects), and
#   - /proc/net/sockstat "TCP: mem" (pages charged to TCP buffers).
# Loopback means both ends are on this machine: N connections are 2N sockets, half in
# the daemon and half in storm; the figure per socket is the growth divided by 2N.
# Other activity on the machine moves Slab too: run it on a quiet machine, and repeat.
#
#   benches/kernel_memory.sh [N]        (default 19000; the open-file limit bounds it)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-19000}"
[ "${NO_BUILD:-}" = 1 ] || cargo build --release --workspace --bins -q
dir="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
cat >"$dir/switchboard.toml" <<CONF
state_dir = "$dir/state"
[listeners.client]
addr = "127.0.0.1:0"
[listeners.echo]
addr = "127.0.0.1:0"
[admin]
enabled = false
[heartbeat]
interval = "1m"
idle_timeout = "10m"
handshake_timeout = "1m"
CONF
target/release/switchboard run --config "$dir/switchboard.toml" 2>"$dir/log" &
pid=$!
for _ in $(seq 100); do grep -q "switchboard listening" "$dir/log" && break; sleep 0.05; done
echo_addr="$(grep -o 'echo_addr=Some([0-9.:]*)' "$dir/log" | sed 's/echo_addr=Some(\(.*\))/\1/')"
slab() { awk '/^Slab:/ {print $2}' /proc/meminfo; }           # kB
tcp_mem() { awk '/^TCP:/ {print $NF}' /proc/net/sockstat; }   # pages
tcp_inuse() { awk '/^TCP:/ {print $3}' /proc/net/sockstat; }
# Bytes held by each slab cache (active objects x object size); needs root.
slabs() { awk 'NR > 2 {print $1, $2 * $4}' /proc/slabinfo 2>/dev/null | sort; }
sync; echo 2 >/proc/sys/vm/drop_caches 2>/dev/null || true
sleep 1
slab0=$(slab); mem0=$(tcp_mem); inuse0=$(tcp_inuse); slabs >"$dir/slabs0"
target/release/storm --scenario idle --raw --target "$echo_addr" -n "$N" --duration 15 -q \
  >"$dir/storm.out" 2>&1 &
storm=$!
# Sample once all connections are up (2N more sockets in use), a few seconds in.
for _ in $(seq 300); do
  [ $(( $(tcp_inuse) - inuse0 )) -ge $(( 2 * N )) ] && break
  sleep 0.1
done
sleep 3
slab1=$(slab); mem1=$(tcp_mem); inuse1=$(tcp_inuse); slabs >"$dir/slabs1"
wait "$storm" || true
sockets=$(( inuse1 - inuse0 ))
page=$(getconf PAGESIZE)
echo "connections            $N ($sockets TCP sockets more in use)"
echo "Slab growth            $(( slab1 - slab0 )) kB  -> $(( (slab1 - slab0) * 1024 / sockets )) B per socket"
echo "TCP buffer memory      $(( (mem1 - mem0) * page / 1024 )) kB -> $(( (mem1 - mem0) * page / sockets )) B per socket"
if [ -s "$dir/slabs1" ]; then
  echo "largest slab caches' growth per socket (active objects x size):"
  join "$dir/slabs0" "$dir/slabs1" \
    | awk -v n="$sockets" '{d = $3 - $2; if (d > 0) printf "  %-24s %6d B\n", $1, d / n}' \
    | sort -k2 -n -r | head -8
fi
