#!/usr/bin/env bash
# Builds sockbroker (scripts/build.sh) and runs every test suite with ctest:
# unit tests, the fuzz corpora, and the integration tests that start the real
# broker in private network namespaces with unprivileged clients (these need
# root; without it they skip, or fail when SOCKBROKER_TEST_REQUIRE_ROOT=1).
# Then builds everything again with AddressSanitizer and
# UndefinedBehaviorSanitizer (build-asan/) and runs the same suites there.
# Tests labelled "soak" (long-running) are left out of both.
#
# Usage: sudo scripts/test.sh [extra ctest arguments, e.g. -L unit or -R Lockdown]
#        SOCKBROKER_SANITIZERS=0 sudo scripts/test.sh   # skip the sanitizer pass
# Exit status: 0 when every run passed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

"$root/scripts/build.sh"

echo "==> Running the tests (ctest -LE soak)"
status=0
ctest --test-dir "$root/build" --output-on-failure -j2 --timeout 300 -LE soak "$@" || status=$?

if [ "${SOCKBROKER_SANITIZERS:-1}" != 0 ]; then
  asan="$root/build-asan"
  echo "==> Building with AddressSanitizer + UndefinedBehaviorSanitizer in $asan"
  # Debug (-O0): the quickest to compile, and the tests are I/O-bound anyway.
  cmake -S "$root" -B "$asan" -DCMAKE_BUILD_TYPE=Debug -DSOCKBROKER_WERROR=ON -DSOCKBROKER_SANITIZE=ON >/dev/null
  mkdir -p "$asan"
  if ! cmake --build "$asan" -j "$(nproc)" >"$asan/build.log" 2>&1; then
    tail -n 60 "$asan/build.log"
    echo "sanitizer build failed (full log: $asan/build.log)" >&2
    exit 1
  fi
  echo "==> Running the tests under the sanitizers"
  # Every report is fatal. LeakSanitizer stays off: it needs ptrace at exit,
  # which the lockdown filter and the broker's own seccomp filter refuse.
  export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  ctest --test-dir "$asan" --output-on-failure -j2 --timeout 600 -LE soak "$@" || status=$?
fi
exit "$status"
