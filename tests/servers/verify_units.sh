#!/usr/bin/env bash
# The example units of docs/servers.md (systemd/examples/*.service except
# myapp.service, which tests/systemd checks), offline:
#   - `systemd-analyze verify` of each, beside sockbroker.socket and
#     sockbroker.service, with /usr/local/bin/sockbroker pointing at the build
#     (verify insists the program exists); any message fails the test;
#   - each runs `/usr/local/bin/sockbroker run -- PROGRAM` (or `run -s NAME --`
#     for socket activation) and nothing else of sockbroker's, and the test
#     script it names (tests/servers/NAME.sh) runs that PROGRAM.
#
# Usage: verify_units.sh SOURCE_DIR SOCKBROKERD SOCKBROKER
set -euo pipefail

fail() { echo "server units: FAIL: $*" >&2; exit 1; }

[ $# -eq 3 ] || { echo "usage: $0 SOURCE_DIR SOCKBROKERD SOCKBROKER" >&2; exit 64; }
source=$1 sockbrokerd=$2 sockbroker=$3
command -v systemd-analyze >/dev/null || fail "systemd-analyze is not installed (Debian package systemd)"

work=$(mktemp -d /tmp/sockbroker-server-units.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/units"
sed "s|/usr/local/sbin/sockbrokerd|$sockbrokerd|" "$source/systemd/sockbroker.service" >"$work/units/sockbroker.service"
cp "$source/systemd/sockbroker.socket" "$work/units/"

units=()
for unit in "$source"/systemd/examples/*.service; do
  name=$(basename "$unit")
  [ "$name" != myapp.service ] || continue
  units+=("$name")
  exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
  [ "$(grep -c '^ExecStart=' "$unit")" -eq 1 ] || fail "$name: not exactly one ExecStart="
  [[ "$exec_start" =~ ^/usr/local/bin/sockbroker\ run\ (-s\ [A-Za-z0-9_.-]+\ )*--\ (/[^ ]+) ]] ||
    fail "$name: ExecStart= is not \`/usr/local/bin/sockbroker run [-s NAME]... -- /PROGRAM ...\`: $exec_start"
  program=${BASH_REMATCH[2]}
  script=$(grep -o 'tests/servers/[a-z_]*\.sh' "$unit" | head -1)
  [ -n "$script" ] || fail "$name: names no tests/servers/*.sh that runs what it runs"
  [ -f "$source/$script" ] || fail "$name: $script does not exist"
  # The test may run its own build of the program (httpd-go): the name must match.
  grep -qF -- "$(basename "$program")" "$source/$script" || fail "$name runs $program, which $script does not run"
  echo "$name: $exec_start  ($script runs $program)"
  sed "s|^ExecStart=/usr/local/bin/sockbroker |ExecStart=$sockbroker |" "$unit" >"$work/units/$name"
done
[ "${#units[@]}" -gt 0 ] || fail "no example units found in $source/systemd/examples"

echo "==> systemd-analyze verify ${units[*]}"
status=0
(cd "$work/units" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no sockbroker.socket sockbroker.service "${units[@]}") \
  >"$work/verify.log" 2>&1 || status=$?
cat "$work/verify.log"
[ "$status" -eq 0 ] || fail "systemd-analyze verify exited with $status"
[ ! -s "$work/verify.log" ] || fail "systemd-analyze verify printed the messages above"
echo "server units: PASS"
