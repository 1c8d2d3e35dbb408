#!/usr/bin/env bash
# Checks the TLS proxy examples in this directory.
#
#   tuning/tls/verify.sh            haproxy -c and nginx -t on the shipped files
#   tuning/tls/verify.sh --e2e      and a real conversation through each proxy
#
# The files are checked as shipped except for what a test host must change: the
# certificate paths (a throwaway self-signed certificate), the ports (BASE_PORT,
# default 19700, and the next few), haproxy's user switch, syslog target and maxconn
# (halved open-file limit of this shell). --e2e also
# needs socat and a release build of the daemon and the examples
# (`cargo build --release --bin switchboard --example agent --example visitor`): it
# starts the daemon on loopback, each proxy in front of it, and socat as the TLS
# client (checking the certificate) for the agent and visitor examples, which speak
# the plain protocol to socat.
set -euo pipefail
cd "$(dirname "$0")/../.."
base="${BASE_PORT:-19700}"
daemon_port="$base" admin_port=$((base + 1)) haproxy_port=$((base + 43)) nginx_port=$((base + 44))
plain_port=$((base + 80))
tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
cat "$tmp/cert.pem" "$tmp/key.pem" >"$tmp/haproxy.pem"

sed -e "s#/etc/haproxy/certs/switchboard.pem#$tmp/haproxy.pem#" \
    -e "s#bind :443 #bind 127.0.0.1:$haproxy_port #" \
    -e "s#127.0.0.1:7700#127.0.0.1:$daemon_port#g" \
    -e '/^ *user haproxy$/d' -e '/^ *group haproxy$/d' \
    -e 's#log /dev/log local0#log stderr format short local0#' \
    -e "s#maxconn 100000#maxconn $(( $(ulimit -n) / 2 - 100 ))#" \
    tuning/tls/haproxy.cfg >"$tmp/haproxy.cfg"
haproxy -c -q -f "$tmp/haproxy.cfg"
echo "tuning/tls/haproxy.cfg: haproxy -c ok"

sed -e "s#/etc/nginx/tls/switchboard.crt#$tmp/cert.pem#" \
    -e "s#/etc/nginx/tls/switchboard.key#$tmp/key.pem#" \
    -e "s#listen 443 ssl;#listen 127.0.0.1:$nginx_port ssl;#" \
    -e "s#127.0.0.1:7700#127.0.0.1:$daemon_port#g" \
    tuning/tls/nginx-stream.conf >"$tmp/nginx-stream.conf"
# The main file a Debian nginx would have around it: the stream module, and the
# include at top level.
cat >"$tmp/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log;
daemon off;
events {}
include $tmp/nginx-stream.conf;
EOF
nginx -q -t -p "$tmp" -e "$tmp/nginx-error.log" -c "$tmp/nginx.conf"
echo "tuning/tls/nginx-stream.conf: nginx -t ok"

[ "${1:-}" = --e2e ] || exit 0

bin=target/release
for b in switchboard examples/agent examples/visitor; do
  [ -x "$bin/$b" ] || { echo "no $bin/$b: build it first (see the top of this file)" >&2; exit 1; }
done
mkdir "$tmp/state"
cat >"$tmp/switchboard.toml" <<EOF
state_dir = "$tmp/state"
[listeners.client]
addr = "127.0.0.1:$daemon_port"
[admin]
addr = "127.0.0.1:$admin_port"
EOF
"$bin/switchboard" run --config "$tmp/switchboard.toml" >"$tmp/daemon.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -fsS -m 1 "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS -m 1 "http://127.0.0.1:$admin_port/readyz" >/dev/null
haproxy -db -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 &
pids+=($!)
nginx -p "$tmp" -e "$tmp/nginx-error.log" -c "$tmp/nginx.conf" &
pids+=($!)
for port in $haproxy_port $nginx_port; do
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null \
    || { echo "nothing listens on $port" >&2; cat "$tmp/haproxy.log" "$tmp/nginx-error.log" >&2; exit 1; }
done
secret="$tmp/state/dev-secret"

for proxy in haproxy:$haproxy_port nginx:$nginx_port; do
  name="${proxy%%:*}" port="${proxy##*:}"
  # socat: plain TCP on $plain_port for the examples, TLS to the proxy, certificate
  # checked against the throwaway CA (this certificate itself) and the name localhost.
  socat "TCP-LISTEN:$plain_port,bind=127.0.0.1,reuseaddr,fork" \
    "OPENSSL:127.0.0.1:$port,cafile=$tmp/cert.pem,commonname=localhost,verify=1" &
  socat_pid=$!
  pids+=($socat_pid)
  for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$plain_port") 2>/dev/null && break
    sleep 0.1
  done
  "$bin/examples/agent" --addr "127.0.0.1:$plain_port" --secret-file "$secret" \
    --sub "agent-$name" --timeout 30 >"$tmp/agent-$name.log" 2>&1 &
  agent_pid=$!
  "$bin/examples/visitor" --addr "127.0.0.1:$plain_port" --secret-file "$secret" \
    --sub "visitor-$name" --rating 5 --timeout 30 "hello through $name" >"$tmp/visitor-$name.log" 2>&1 \
    || { cat "$tmp/visitor-$name.log" "$tmp/agent-$name.log" >&2; exit 1; }
  wait "$agent_pid" || { cat "$tmp/agent-$name.log" >&2; exit 1; }
  grep -q "agent-$name: agent: hello through $name" "$tmp/visitor-$name.log" \
    || { cat "$tmp/visitor-$name.log" >&2; exit 1; }
  grep -q "rated 5" "$tmp/visitor-$name.log"
  kill "$socat_pid"
  wait "$socat_pid" 2>/dev/null || true
  # And the proxy's port speaks only TLS: the plain protocol straight to it fails.
  if "$bin/examples/visitor" --addr "127.0.0.1:$port" --secret-file "$secret" \
    --sub "plain-$name" --timeout 5 "no TLS" >"$tmp/plain-$name.log" 2>&1; then
    echo "$name accepted the plain protocol on its TLS port" >&2
    exit 1
  fi
  echo "$name: a visitor and an agent talked through TLS (socat -> $name -> daemon)"
done
