#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client (RFC 6455 conformance) against the echo
# listener in WebSocket mode, and fails if any case in sections 1-7 and 10 FAILED.
#
#   tests/autobahn/run.sh [path/to/switchboard]   (default: target/debug/switchboard)
#
# Needs Python 2.7 with `autobahntestsuite` (PyPI); AUTOBAHN_PYTHON names the
# interpreter (default ~/.pyenv/versions/2.7.18/bin/python). The suite is installed
# into a virtualenv under target/autobahn-venv on first use. Sections 9 (performance)
# and 12/13 (permessage-deflate, which the gateway does not offer) are left out.
# AUTOBAHN_BACKEND=uring runs it on the io_uring backend (default epoll). The summary
# table goes to target/autobahn/summary.md, the full report beside it.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=${1:-target/debug/switchboard}
py=${AUTOBAHN_PYTHON:-$HOME/.pyenv/versions/2.7.18/bin/python}
venv=target/autobahn-venv
out=target/autobahn
port=${AUTOBAHN_PORT:-17790}
backend=${AUTOBAHN_BACKEND:-epoll}

if [ ! -x "$venv/bin/wstest" ]; then
  "$py" -m pip install --quiet --disable-pip-version-check "virtualenv==20.15.1" >/dev/null 2>&1 \
    || "$py" -m pip install --quiet --user --disable-pip-version-check "virtualenv==20.15.1"
  "$py" -m virtualenv -q "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "autobahntestsuite==0.8.2" 2>&1 \
    | grep -v DEPRECATION || true
fi

rm -rf "$out" && mkdir -p "$out/state"
cat > "$out/switchboard.toml" <<TOML
state_dir = "$PWD/$out/state"
[listeners.client]
addr = "127.0.0.1:$((port + 1))"
[listeners.echo]
addr = "127.0.0.1:$port"
websocket = true
[admin]
enabled = false
[reactor]
backend = "$backend"
[web]
# Case 9.x is out; the largest message of sections 1-7/10 is 64 KiB.
max_message_bytes = 16777216
[heartbeat]
handshake_timeout = "30s"
idle_timeout = "60s"
[log]
level = "warn"
TOML
"$bin" run --config "$out/switchboard.toml" >"$out/daemon.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

cat > "$out/fuzzingclient.json" <<JSON
{
  "outdir": "$PWD/$out/report",
  "servers": [{"agent": "switchboard", "url": "ws://127.0.0.1:$port"}],
  "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON
(cd "$out" && timeout 900 "$PWD/../../$venv/bin/wstest" -m fuzzingclient -s fuzzingclient.json) \
  >"$out/wstest.log" 2>&1 || { tail -n 30 "$out/wstest.log"; exit 1; }

"$py" - "$out/report/index.json" "$out/summary.md" <<'PY'
import json, sys, collections
cases = json.load(open(sys.argv[1]))["switchboard"]
by_section = collections.OrderedDict()
def key(c):
    return [int(x) for x in c.split(".")]
for case in sorted(cases, key=key):
    r = cases[case]
    sec = case.split(".")[0]
    by_section.setdefault(sec, collections.Counter())
    by_section[sec][r["behavior"]] += 1
    if r["behaviorClose"] not in ("OK", "INFORMATIONAL"):
        by_section[sec]["close " + r["behaviorClose"]] += 1
cols = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
lines = ["| section | cases | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
failed = [c for c in cases if cases[c]["behavior"] == "FAILED" or cases[c]["behaviorClose"] == "FAILED"]
for sec, cnt in by_section.items():
    total = sum(v for k, v in cnt.items() if not k.startswith("close "))
    lines.append("| %s | %d | %s |" % (sec, total, " | ".join(str(cnt[c]) for c in cols)))
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
if failed:
    print("FAILED cases: " + ", ".join(sorted(failed, key=key)))
    sys.exit(1)
print("Autobahn: %d cases, none FAILED" % len(cases))
PY
