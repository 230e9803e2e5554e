# shellcheck shell=bash
# Helpers for the scripts that lib.sh's nspawn_boot runs inside the container
# (as root, under `set -euo pipefail`, once the boot has finished).

# The failing command, since a script's line numbers are those of its
# here-document, not of the test file.
trap 'echo "FAIL: \`$BASH_COMMAND\` exited with $?" >&2' ERR

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

step() { echo "==> $*"; }

# wait_for SECONDS WHAT COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local seconds=$1 what=$2 deadline
  shift 2
  deadline=$(($(date +%s%N) + seconds * 1000000000))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s%N)" -lt "$deadline" ] || fail "waited $seconds s for $what"
    sleep 0.05
  done
}

# expect_status CODE COMMAND...: COMMAND must exit with CODE.
expect_status() {
  local expected=$1 status=0
  shift
  "$@" || status=$?
  [ "$status" -eq "$expected" ] || fail "\`$*\` exited with $status, expected $expected"
}

# unit_property UNIT PROPERTY: its value, e.g. unit_property sockbroker.service ActiveState.
unit_property() { systemctl show --property="$2" --value "$1"; }

# unit_state UNIT: ActiveState/SubState, e.g. active/running.
unit_state() { echo "$(unit_property "$1" ActiveState)/$(unit_property "$1" SubState)"; }

unit_state_is() { [ "$(unit_state "$1")" = "$2" ]; }

# as_nobody COMMAND...: as uid/gid 65534, no supplementary groups.
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }

# journal_has UNIT PATTERN: a message from UNIT, or from PID 1 about it,
# matches the extended regular expression PATTERN. journald files a message a
# moment after it was sent: ask with wait_for.
journal_has() { journalctl --unit="$1" --boot --no-pager -o cat | grep -qE -- "$2"; }
