#!/usr/bin/env bash
# Builds sockbroker in build/ at the top of the repository: Release with debug
# information, warnings as errors, every core. Installs missing Debian
# packages first (scripts/deps.sh).
#
# Usage: scripts/build.sh
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/build"

"$root/scripts/deps.sh"

echo "==> Configuring $build"
cmake -S "$root" -B "$build" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSOCKBROKER_WERROR=ON >/dev/null

echo "==> Building with $(nproc) jobs"
cmake --build "$build" -j "$(nproc)"

echo "==> Built:"
echo "    $build/broker/sockbrokerd                 the daemon (runs as root)"
echo "    $build/client/sockbroker                  the command-line tool"
echo "    $build/client/sockbroker-demo-httpd       the demo service"
echo "    $build/client/libsockbroker.so, libsockbroker.a   the client library"
