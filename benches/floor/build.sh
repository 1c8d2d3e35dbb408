#!/usr/bin/env bash
# Builds the chat floor's relay and load programs and the echo floor's server (echo.c;
# plain C, no dependencies) with the system compiler: benches/floor/build.sh [OUT_DIR]
# (default $CARGO_TARGET_DIR/floor, else target/floor). Prints the directory.
# The io_uring echo floor (uring_echo.c) needs liburing 2.3+ (Debian: liburing-dev);
# without it that one program is skipped with a message on standard error.
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
if echo '#include <liburing.h>' | "$CC" -E -x c - >/dev/null 2>&1; then
    "$CC" "${flags[@]}" -o "$out/uring_echo" "$here/uring_echo.c" -luring
else
    rm -f "$out/uring_echo"
    echo "build.sh: liburing.h not found (apt-get install liburing-dev): uring_echo skipped" >&2
fi
echo "$out"
