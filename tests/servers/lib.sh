# shellcheck shell=bash
# Shared harness of tests/servers/*.sh, sourced by each: a real server program
# from Debian's packages, started as uid 65534 through `sockbroker run --`, in a
# private network namespace, against the real sockbrokerd.
#
# A test script does:
#   source "$(dirname "$0")/lib.sh"
#   servers_init NAME "$@"             # args: SOCKBROKERD SOCKBROKER [CASE]
#   require_program nginx nginx        # program, Debian package
#   write_policy <<'TOML' ... TOML     # sockets granted to uid 65534
#   start_broker
#   serve -- /usr/sbin/nginx ...       # as uid 65534: sockbroker run -- PROGRAM
#   wait_http http://127.0.0.1:80/ "expected text"
#   expect_audit grant 0.0.0.0 80
#   pass
#
# Harness check (SOCKBROKER_SERVERS_HARNESS=1): what can be checked before
# supervised bind exists. `serve` runs the program as root binding itself,
# without sockbroker and without the broker (which would hold its port);
# `serve_activated` runs `sockbroker run -s NAME --no-lockdown`. The checks
# that only supervised bind can pass (`supervised_only`) are skipped. It shows
# the server's configuration, the requests and the fd handoff are right, so that
# a failure of the real test is the product's.
#
# Needs root (network namespace, uid switching): exits 77 (skip) without it, or
# fails when SOCKBROKER_TEST_REQUIRE_ROOT=1 (CI), as do missing programs.

set -euo pipefail

servers_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
harness=false
[ "${SOCKBROKER_SERVERS_HARNESS:-}" = 1 ] && harness=true
test_name=servers
work=
broker_pid=
server_pid=
server_log=

step() { echo "==> $*"; }

# Prints the logs that explain a failure, then fails.
fail() {
  echo "$test_name: FAIL: $*" >&2
  if [ -n "$work" ] && [ -d "$work" ]; then
    local f
    for f in "$work"/logs/*; do
      [ -s "$f" ] || continue
      echo "---- $(basename "$f") (last 40 lines)" >&2
      tail -n 40 "$f" >&2
    done
  fi
  exit 1
}

# A precondition the machine lacks: skip, or fail where skips are forbidden.
# shellcheck source=../skip_or_fail.sh
source "$(dirname "${BASH_SOURCE[0]}")/../skip_or_fail.sh"
skip_or_fail() { sbtest_skip_or_fail "$test_name" "$*"; }

pass() {
  stop_server TERM
  if $harness; then
    echo "$test_name: PASS (harness check only: SOCKBROKER_SERVERS_HARNESS=1)"
  else
    echo "$test_name: PASS"
  fi
  exit 0
}

# servers_init NAME SOCKBROKERD SOCKBROKER [CASE]: checks root, re-runs the
# script in a new network namespace, prepares $work. Sets sockbrokerd,
# sockbroker (a copy uid 65534 can run), control, srv (a directory owned by
# uid 65534 for the server's files), case_name.
servers_init() {
  test_name=$1
  shift
  if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: $0 SOCKBROKERD SOCKBROKER [CASE]" >&2
    exit 64
  fi
  sockbrokerd=$1
  sockbroker=$2
  case_name=${3:-}
  [ -z "$case_name" ] || test_name="$test_name $case_name"
  if [ "$(id -u)" -ne 0 ]; then
    skip_or_fail "needs root (network namespace, port 80, uid 65534 servers)"
  fi
  if [ -z "${SOCKBROKER_SERVERS_NETNS:-}" ]; then
    exec unshare --net env SOCKBROKER_SERVERS_NETNS=1 bash "$0" "$@"
  fi
  ip link set lo up || fail "cannot bring lo up in the private network namespace"

  # uid 65534 must reach everything it runs or reads: a copy under /tmp.
  work=$(mktemp -d "/tmp/sockbroker-servers-${test_name// /-}.XXXXXX")
  chmod 0755 "$work"
  trap cleanup EXIT
  mkdir -m 0755 "$work/bin" "$work/run" "$work/logs"
  install -m 0755 "$sockbroker" "$work/bin/sockbroker"
  sockbroker=$work/bin/sockbroker
  control=$work/run/control.sock
  srv=$work/srv
  mkdir -m 0755 "$srv"
  chown 65534:65534 "$srv" "$work/logs"
  # The servers start in the current directory, and some go back to it
  # (haproxy after reading its configuration, gunicorn before --chdir): the
  # build tree's may be closed to uid 65534, as under /root (mode 0700).
  cd "$work"
}

# require_program PROGRAM PACKAGE
require_program() {
  command -v "$1" >/dev/null ||
    skip_or_fail "$1 is not installed (Debian package $2; scripts/deps.sh installs it)"
}

# (Started directly, never through a shell function, so that $! is the pid
# that becomes `sockbroker run`.)
# write_policy: the policy (TOML) from stdin; it is checked with `sockbroker
# check` so that a mistake in it shows as such.
write_policy() {
  cat >"$work/policy.toml"
  "$sockbroker" check --policy "$work/policy.toml" >"$work/check.log" 2>&1 ||
    fail "the test's policy is invalid: $(cat "$work/check.log")"
}

# start_broker: sockbrokerd with the policy, its own control path, the audit
# log in $work/audit.log. Not in the harness check of a self-binding server
# (the broker would hold the port the server binds itself); a socket-activation
# test sets activation=1 before calling it.
activation=0
start_broker() {
  if $harness && [ "$activation" != 1 ]; then return 0; fi
  "$sockbrokerd" --policy "$work/policy.toml" --control "$control" --audit "$work/audit.log" \
    >"$work/logs/sockbrokerd.log" 2>&1 &
  broker_pid=$!
  local _
  for _ in $(seq 200); do
    [ -S "$control" ] && return 0
    kill -0 "$broker_pid" 2>/dev/null || fail "sockbrokerd exited at start-up"
    sleep 0.05
  done
  fail "sockbrokerd did not create $control within 10 s"
}

# serve [--log NAME] -- PROGRAM [ARG]...: PROGRAM as uid 65534 under
# `sockbroker run --` (no other flag), in the background. $server_pid is the
# supervisor's pid, $server_log its output (and PROGRAM's).
serve() {
  local name=server
  if [ "$1" = --log ]; then name=$2; shift 2; fi
  [ "$1" = -- ] || fail "serve: usage: serve [--log NAME] -- PROGRAM [ARG]..."
  shift
  server_log=$work/logs/$name.log
  if $harness; then
    echo "(harness check) as root, binding itself: $*"
    "$@" >"$server_log" 2>&1 &
  else
    echo "as uid 65534: sockbroker run -- $*"
    setpriv --reuid=65534 --regid=65534 --clear-groups \
      "$sockbroker" --control "$control" run -- "$@" >"$server_log" 2>&1 &
  fi
  server_pid=$!
}

# serve_activated [--log NAME] SOCKET... -- PROGRAM [ARG]...: PROGRAM as uid
# 65534 under `sockbroker run -s SOCKET... --` (socket activation: fds 3, ...).
serve_activated() {
  local name=server
  if [ "$1" = --log ]; then name=$2; shift 2; fi
  local flags=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do flags+=(-s "$1"); shift; done
  [ $# -gt 0 ] || fail "serve_activated: usage: serve_activated [--log NAME] SOCKET... -- PROGRAM [ARG]..."
  shift
  $harness && flags+=(--no-lockdown)
  server_log=$work/logs/$name.log
  echo "as uid 65534: sockbroker run ${flags[*]} -- $*"
  setpriv --reuid=65534 --regid=65534 --clear-groups \
    "$sockbroker" --control "$control" run "${flags[@]}" -- "$@" >"$server_log" 2>&1 &
  server_pid=$!
}

# run_expect_failure NAME TIMEOUT -- PROGRAM [ARG]...: runs PROGRAM as uid
# 65534 under `sockbroker run --` in the foreground and expects it to fail
# (within TIMEOUT seconds); its output is in $work/logs/NAME.log.
# The tests give it addresses outside the policy on ports below 1024, so that
# in the harness check PROGRAM runs as uid 65534 without sockbroker and the
# kernel refuses the bind with the same EACCES supervised bind must return:
# that checks the message each test looks for in the program's own output.
run_expect_failure() {
  local name=$1 seconds=$2
  shift 3
  local log=$work/logs/$name.log status=0
  local run=("$sockbroker" --control "$control" run --)
  if $harness; then
    run=()
    echo "(harness check) as uid 65534 without sockbroker (the kernel refuses a port below 1024 with EACCES): $* (must fail)"
  else
    echo "as uid 65534: sockbroker run -- $* (must fail)"
  fi
  timeout --kill-after=2 "$seconds" setpriv --reuid=65534 --regid=65534 --clear-groups \
    "${run[@]}" "$@" >"$log" 2>&1 || status=$?
  [ "$status" -ne 124 ] && [ "$status" -ne 137 ] || fail "$name: still running after ${seconds} s; it should have failed to bind"
  [ "$status" -ne 0 ] || fail "$name: exited 0; it should have failed to bind"
  echo "exited with status $status"
  run_status=$status
}

# expect_run_status N: the last run_expect_failure exited N, the status the
# program itself exits with (seen in the harness check, without sockbroker):
# the supervisor must exit with PROGRAM's status.
run_status=
expect_run_status() {
  [ "$run_status" = "$1" ] || fail "sockbroker run exited $run_status; the program exits $1 there (the supervisor must exit with its status)"
}

server_alive() { [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; }

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 50 ms; fails
# at once when the server has exited.
wait_until() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  while ((SECONDS < deadline)); do
    "$@" && return 0
    if [ -n "$server_pid" ] && ! kill -0 "$server_pid" 2>/dev/null; then
      local status=0
      wait "$server_pid" || status=$?
      server_pid=
      fail "the server exited (status $status) while waiting for: $what"
    fi
    sleep 0.05
  done
  fail "timed out after ${seconds} s waiting for: $what"
}

# http_body URL: the body, or nothing (and status 1) if no answer.
http_body() { curl -sS --max-time 2 -g "$1" 2>/dev/null; }
http_has() { local body; body=$(http_body "$1") && grep -qF -- "$2" <<<"$body"; }

# wait_http URL TEXT [SECONDS]: until GET URL answers with a body containing TEXT.
wait_http() {
  wait_until "${3:-10}" "GET $1 answering \"$2\"" http_has "$1" "$2"
  echo "GET $1: $(http_body "$1" | head -1)"
}

# expect_refused URL: nothing listens there (connection refused).
expect_refused() {
  local status=0
  curl -sS --max-time 2 -g -o /dev/null "$1" 2>/dev/null || status=$?
  [ "$status" -eq 7 ] || fail "GET $1: expected connection refused (curl 7), got curl status $status"
  echo "GET $1: connection refused, as expected"
}

# expect_log FILE TEXT WHY: FILE contains TEXT.
expect_log() {
  grep -qF -- "$2" "$1" || fail "$(basename "$1") lacks \"$2\": $3"
  echo "$(basename "$1"): $(grep -F -- "$2" "$1" | head -1)"
}

# supervised_only: true unless in the harness check (then says what is skipped).
supervised_only() {
  if $harness; then
    echo "(harness check) skipped: $*"
    return 1
  fi
  return 0
}

# expect_audit EVENT ADDRESS PORT: the broker's audit log has an EVENT
# ("grant", "deny") for that address and port.
expect_audit() {
  [ -n "$broker_pid" ] || { echo "(harness check) no broker: audit $1 $2:$3 not checked"; return 0; }
  /usr/bin/python3 "$servers_dir/audit_has.py" "$work/audit.log" "$@" ||
    fail "the audit log has no \"$1\" event for $2 port $3"
}

# stop_server [SIGNAL]: signals the supervisor (default TERM) and waits up to
# 10 s for it to exit; sets $server_status.
server_status=
stop_server() {
  [ -n "$server_pid" ] || return 0
  kill -"${1:-TERM}" "$server_pid" 2>/dev/null || true
  local _
  for _ in $(seq 200); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$server_pid" 2>/dev/null; then
    fail "the supervisor (pid $server_pid) is still running 10 s after SIG${1:-TERM}"
  fi
  # shellcheck disable=SC2034  # the tests read it
  server_status=0
  wait "$server_pid" || server_status=$?
  server_pid=
}

# Every uid 65534 process in this network namespace: the server's tree.
netns_servers() {
  local mine pid
  mine=$(readlink /proc/self/ns/net)
  for pid in /proc/[0-9]*; do
    pid=${pid#/proc/}
    [ "$(stat -c %u "/proc/$pid" 2>/dev/null)" = 65534 ] || continue
    [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$mine" ] || continue
    echo "$pid"
  done
}

# Helpers a test starts in the background (as root): ended by cleanup.
helper_pids=()
track_helper() { helper_pids+=("$1"); }

# Every other process in this network namespace (it is the test's own): what
# the test started, whatever its uid (root servers in the harness check, a
# daemon that outlived its supervisor).
netns_others() {
  local mine pid
  mine=$(readlink /proc/self/ns/net)
  for pid in /proc/[0-9]*; do
    pid=${pid#/proc/}
    [ "$pid" != $$ ] && [ "$pid" != "$BASHPID" ] || continue
    [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$mine" ] || continue
    echo "$pid"
  done
}

cleanup() {
  local status=$?
  local helper
  for helper in "${helper_pids[@]}"; do kill -TERM "$helper" 2>/dev/null || true; done
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; fi
  sleep 0.1
  if [ -n "$broker_pid" ]; then
    kill -TERM "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  fi
  local pid
  for pid in $(netns_others); do kill -KILL "$pid" 2>/dev/null || true; done
  if [ "$status" -ne 0 ] && [ "${SOCKBROKER_SERVERS_KEEP:-}" = 1 ]; then
    echo "kept $work" >&2
  else
    rm -rf "$work"
  fi
}
