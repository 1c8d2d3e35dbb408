#!/usr/bin/env bash
# Builds the chat floor's relay and load programs and the echo floor's server (echo.c;
# plain C, no dependencies) with the system compiler: benches/floor/build.sh [OUT_DIR]
# (default $CARGO_TARGET_DIR/floor, else target/floor). Prints the directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-${CARGO_TARGET_DIR:-$root/target}/floor}"
mkdir -p "$out"
CC="${CC:-cc}"
flags=(-O2 -std=c11 -Wall -Wextra -Werror -pthread)
"$CC" "${flags[@]}" -o "$out/relay" "$here/relay.c"
"$CC" "${flags[@]}" -o "$out/load" "$here/load.c" -lm
"$CC" "${flags[@]}" -o "$out/echo" "$here/echo.c"
echo "$out"
