// Root-only tests skip with a clear message when not root, and fail instead
// when SOCKBROKER_TEST_REQUIRE_ROOT=1 (CI), so a skip can never hide in CI.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

// Whether SOCKBROKER_TEST_REQUIRE_ROOT=1 (CI): then a missing precondition
// (root, cgroup2, a kernel feature) must fail the test instead of skipping it.
inline bool sockbroker_skips_are_forbidden() {
  const char* require = std::getenv("SOCKBROKER_TEST_REQUIRE_ROOT");
  return require != nullptr && std::strcmp(require, "1") == 0;
}

// The one way a test gives up on a missing precondition: skipped with `why`,
// or failed where SOCKBROKER_TEST_REQUIRE_ROOT=1 forbids skipping. Returns
// from the test (GTEST_SKIP and FAIL do); `why` may be a streamed expression.
#define SBTEST_SKIP_OR_FAIL(why)                                                          \
  do {                                                                                    \
    if (sockbroker_skips_are_forbidden()) {                                               \
      FAIL() << why << ", and SOCKBROKER_TEST_REQUIRE_ROOT=1 forbids skipping this test"; \
    }                                                                                     \
    GTEST_SKIP() << why;                                                                  \
  } while (0)

#define SOCKBROKER_REQUIRE_ROOT()                                                                                 \
  do {                                                                                                            \
    if (::geteuid() != 0) {                                                                                       \
      SBTEST_SKIP_OR_FAIL("needs root (network namespaces, uid switching, low ports); run as root to test it"); \
    }                                                                                                             \
  } while (0)
