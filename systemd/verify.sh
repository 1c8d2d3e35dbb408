#!/usr/bin/env bash
# Checks systemd/switchboard.service with `systemd-analyze verify`, failing on any
# message (verify exits 0 on some warnings, e.g. unknown keys).
#
# verify insists that ExecStart's binary exists, and in CI the daemon is not installed
# at /usr/local/bin. So the unit is verified as a copy in a temporary directory where
# /usr/local/bin/switchboard is replaced by the binary just built (argument 1): the
# only change is that path, so every other line is checked as shipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(realpath "${1:?usage: systemd/verify.sh PATH/TO/switchboard}")"
[ -x "$bin" ] || { echo "not an executable: $bin" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
sed "s#/usr/local/bin/switchboard#$bin#g" systemd/switchboard.service >"$tmp/switchboard.service"
if ! diff <(sed "s#$bin#/usr/local/bin/switchboard#g" "$tmp/switchboard.service") \
    systemd/switchboard.service >/dev/null; then
  echo "verify.sh: rewriting the binary path changed more than that path" >&2
  exit 1
fi
out="$(SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no "$tmp/switchboard.service" 2>&1)" \
  || { echo "$out" >&2; exit 1; }
if [ -n "$out" ]; then
  echo "systemd-analyze verify reported:" >&2
  echo "$out" >&2
  exit 1
fi
# The sysusers file must parse too (prints the users it would create).
if command -v systemd-sysusers >/dev/null; then
  systemd-sysusers --dry-run "$PWD/systemd/switchboard.sysusers" >/dev/null 2>"$tmp/sysusers.err" \
    || { cat "$tmp/sysusers.err" >&2; exit 1; }
fi
echo "systemd/switchboard.service: verify ok"
