#!/usr/bin/env bash
# Builds sockbroker (scripts/build.sh) and runs every test suite with ctest:
# unit tests, and the integration tests that start the real broker in private
# network namespaces with unprivileged clients (these need root; without it
# they skip, or fail when SOCKBROKER_TEST_REQUIRE_ROOT=1). Tests labelled
# "soak" (long-running) are left out.
#
# Usage: sudo scripts/test.sh [extra ctest arguments, e.g. -L unit or -R Lockdown]
# Exit status: ctest's.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

"$root/scripts/build.sh"

echo "==> Running the tests (ctest -LE soak)"
status=0
ctest --test-dir "$root/build" --output-on-failure -j2 --timeout 300 -LE soak "$@" || status=$?
exit "$status"
