# Sourced by the shell tests: the one way they skip (exit 77, which ctest
# reports as skipped) on a machine that lacks what they need, or fail instead
# where CI forbids skipping (SOCKBROKER_TEST_REQUIRE_ROOT=1, set by .ci/run).
# The C++ tests do the same through SBTEST_SKIP_OR_FAIL (require_root.hpp).

# sbtest_skip_or_fail NAME WHY: skips NAME, or fails it, saying WHY.
sbtest_skip_or_fail() {
  if [ "${SOCKBROKER_TEST_REQUIRE_ROOT:-}" = 1 ]; then
    echo "$1: FAIL: $2 (SOCKBROKER_TEST_REQUIRE_ROOT=1 forbids skipping)" >&2
    exit 1
  fi
  echo "$1: SKIP: $2"
  exit 77
}

# sbtest_require_root NAME WHAT_FOR: returns if root, else skips or fails.
sbtest_require_root() {
  [ "$(id -u)" -eq 0 ] || sbtest_skip_or_fail "$1" "needs root ($2)"
}
