#!/usr/bin/env bash
# The systemd units, checked offline (no systemd as PID 1 is needed):
#   1. `systemd-analyze verify` of systemd/sockbroker.socket, sockbroker.service
#      and examples/myapp.service, with their ExecStart= pointing at the built
#      binaries (verify insists that the program exists) and their
#      Documentation= man pages resolved against man/ (--man=yes). Any message
#      at all, even a warning verify does not count as an error (an unknown
#      key, say), fails the test.
#   2. `systemd-analyze security --offline=true` of sockbroker.service, which
#      must stay at or below the exposure this project measured.
#
# Usage: verify_units.sh SOURCE_DIR SOCKBROKERD SOCKBROKER MAX_EXPOSURE
#   MAX_EXPOSURE: the highest acceptable overall exposure, e.g. 3.0
set -euo pipefail

fail() { echo "systemd units: FAIL: $*" >&2; exit 1; }

[ $# -eq 4 ] || { echo "usage: $0 SOURCE_DIR SOCKBROKERD SOCKBROKER MAX_EXPOSURE" >&2; exit 64; }
source=$1 sockbrokerd=$2 sockbroker=$3 max_exposure=$4
command -v systemd-analyze >/dev/null || fail "systemd-analyze is not installed (Debian package systemd)"
{ [ -x "$sockbrokerd" ] && [ -x "$sockbroker" ]; } || fail "build sockbrokerd and sockbroker first"

work=$(mktemp -d /tmp/sockbroker-units-test.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The copies a `cmake --install` would make, with this build's binaries.
mkdir "$work/units"
sed "s|/usr/local/sbin/sockbrokerd|$sockbrokerd|" "$source/systemd/sockbroker.service" >"$work/units/sockbroker.service"
cp "$source/systemd/sockbroker.socket" "$work/units/sockbroker.socket"
sed "s|/usr/local/bin/sockbroker |$sockbroker |" "$source/systemd/examples/myapp.service" >"$work/units/myapp.service"
grep -q "^ExecStart=$sockbrokerd " "$work/units/sockbroker.service" || fail "sockbroker.service: no ExecStart=/usr/local/sbin/sockbrokerd to point at the build"
grep -q "^ExecStart=$sockbroker " "$work/units/myapp.service" || fail "myapp.service: no ExecStart=/usr/local/bin/sockbroker to point at the build"

# verify --man=yes runs man(1) for each Documentation=man:PAGE(N): give it
# this checkout's pages.
for section in 1 5 8; do
  mkdir -p "$work/man/man$section"
  for page in "$source"/man/*."$section"; do ln -s "$page" "$work/man/man$section/"; done
done

echo "==> systemd-analyze verify --man=yes sockbroker.socket sockbroker.service myapp.service"
status=0
(cd "$work/units" && MANPATH="$work/man" SYSTEMD_LOG_LEVEL=notice \
  systemd-analyze verify --man=yes sockbroker.socket sockbroker.service myapp.service) >"$work/verify.log" 2>&1 || status=$?
cat "$work/verify.log"
[ "$status" -eq 0 ] || fail "systemd-analyze verify exited with $status"
[ ! -s "$work/verify.log" ] || fail "systemd-analyze verify printed the messages above"

echo "==> systemd-analyze security --offline=true sockbroker.service"
systemd-analyze security --offline=true "$work/units/sockbroker.service" >"$work/security.log" 2>&1 || true
exposure=$(sed -n 's/.*Overall exposure level for sockbroker.service: \([0-9.]*\).*/\1/p' "$work/security.log")
[ -n "$exposure" ] || { cat "$work/security.log" >&2; fail "no overall exposure in the output of systemd-analyze security"; }
grep '✗' "$work/security.log" || true
echo "overall exposure: $exposure (at most $max_exposure allowed)"
awk -v got="$exposure" -v max="$max_exposure" 'BEGIN { exit !(got <= max) }' ||
  fail "sockbroker.service's exposure rose to $exposure (above $max_exposure): a hardening setting was lost"
echo "systemd units: PASS"
