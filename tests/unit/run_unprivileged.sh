#!/usr/bin/env bash
# Runs the unit tests once more as uid/gid 65534, when run as root: the `unit`
# label promises tests that need no privilege, and a suite that always runs as
# root (CI, scripts/test.sh) would never show one that quietly needs it (a
# temporary directory root owns, a file only root reads).
# CAP_DAC_READ_SEARCH (ambient) only lets the tests read the build and source
# trees wherever the checkout is (/root is 0700); every other check still sees
# uid 65534.
#
# Usage: run_unprivileged.sh UNIT_TESTS_BINARY
# Exit status: the binary's; 77 (skip) when not root, where ctest ran the unit
# tests unprivileged already (fails instead with SOCKBROKER_TEST_REQUIRE_ROOT=1).
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 UNIT_TESTS_BINARY" >&2; exit 64; }
# shellcheck source=../skip_or_fail.sh
source "$(dirname "${BASH_SOURCE[0]}")/../skip_or_fail.sh"
sbtest_require_root unit_tests_unprivileged "to drop to uid 65534; without it the unit tests already ran as uid $(id -u)"
cd /tmp
exec setpriv --reuid=65534 --regid=65534 --clear-groups \
  --inh-caps=+dac_read_search --ambient-caps=+dac_read_search \
  "$1" --gtest_brief=1
