#!/usr/bin/env bash
# The `sockbroker` command built with SOCKBROKER_STATIC_CLI loads glibc and
# nothing else: libstdc++, Cap'n Proto, kj and libseccomp are linked in, so
# that `sockbroker run`, between the exec of a service's start and the exec
# of the service, does not pay the dynamic loader for them
# (docs/PERFORMANCE.md). A link order that lets a shared copy resolve their
# symbols first undoes that without any other sign: the command still works,
# only slower (it did, unnoticed, for several sessions).
#
# Usage: cli_needed.sh SOCKBROKER_CLI
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 SOCKBROKER_CLI" >&2; exit 64; }
needed=$(readelf -dW "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')
extra=$(grep -Ev '^(libc\.so\.6|ld-linux[-a-z0-9_.]*\.so\.[0-9]+)$' <<<"$needed" || true)
if [ -n "$extra" ]; then
  echo "cli_needed: FAIL: $(basename "$1") loads more than glibc:" $extra >&2
  echo "(the static archives must come before any shared library of the same name; client/CMakeLists.txt)" >&2
  exit 1
fi
echo "cli_needed: PASS:" $needed
