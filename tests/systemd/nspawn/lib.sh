# shellcheck shell=bash
# The nspawn test harness: boots a real systemd 252 as PID 1 of a
# systemd-nspawn container, with this build installed in it as `cmake
# --install --prefix /usr/local` installs it (sockbroker.socket and
# sockbroker.service in /usr/local/lib/systemd/system, installed, not enabled),
# runs a test script inside, powers off, and returns the script's exit status.
#
# A test is one bash file that sources this library:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   nspawn_setup "$@"             # arguments: ROOT STAGE (from CMakeLists.txt)
#   nspawn_file /etc/sockbroker/policy.toml <<'EOF'   # a file in the container
#   [socket.web]
#   ...
#   EOF
#   nspawn_unit myapp.service <<'EOF'                 # a unit (or NAME.d/x.conf)
#   ...
#   EOF
#   nspawn_boot --wants sockbroker.socket <<'EOF'     # the script run inside
#   as_nobody sockbroker list || fail "not served"
#   EOF
#
# nspawn_boot [--wants UNIT]... [--timeout SECONDS] < SCRIPT
#   Boots the container (fresh each time: --volatile=overlay over the root,
#   --private-network with its own lo), and once the boot has finished runs
#   SCRIPT as root with `bash -euo pipefail` and the helpers of inside.sh
#   (fail, step, wait_for, as_nobody, expect_status, ...). Returns SCRIPT's
#   exit status, or non-zero if the container did not get that far, and
#   prints SCRIPT's output; on failure also the container's journal and
#   console. They stay in $NSPAWN_OUT (test.log, journal.txt, console.log)
#   until the test exits; SOCKBROKER_TEST_KEEP_TEMP=1 keeps them after.
#   --wants UNIT: started at boot, as if enabled (PID 1's systemd.wants=), e.g.
#     sockbroker.socket, or sockbroker.service to hold the ports from boot.
#   --timeout: for the whole boot, script and power-off (default 60 s). Past
#     it the journal is read from outside and every process is killed.
#     SOCKBROKER_NSPAWN_TIME_SCALE=N multiplies it, for a slow machine (a VM
#     under software emulation: scripts/debian-kernel-vm.sh); run the test
#     script directly there, since ctest gives each of them 120 s.
#   Files (nspawn_file) are copied into place before sysinit.target, so before
#   any unit reads them; they are ordinary files there, which the script may
#   edit. Units (nspawn_unit) are in /run/systemd/system, read by PID 1 when it
#   starts. Call nspawn_boot again to boot again (same files and units).
#
# Without root the tests skip (exit 77), or fail if SOCKBROKER_TEST_REQUIRE_ROOT=1.
#
# Adding a test: a file NAME.sh here like the others, and NAME in the list
# nspawn_tests in tests/systemd/CMakeLists.txt. restart.sh, for one, boots
# with --wants sockbroker.service (the ports held from boot), starts a service
# holding port 80, and compares what `ss -Hltnpe` says of port 80 (the
# socket's inode, its holders) before and after `systemctl restart
# sockbroker` or a `kill -9` of its MainPID. To look into a live container:
# a `sleep 600` in the script, a longer --timeout, and from the host
# `nsenter --target PID --all`, PID being the container's systemd as the host
# sees it (its cgroup is sockbroker-nspawn-NAME-* under /sys/fs/cgroup/unified).
#
# Why it is done this way (measured on this project's Debian 12 machines):
# - --register=no --keep-unit: the host has no systemd or D-Bus to register with.
# - Each container gets a cgroup of its own, made here: nspawn keeps the
#   container in the cgroup it runs in, which is the root on these hosts, so
#   two containers at once (ctest -j2) would collide. It is also how the
#   processes of a container are found and killed after a timeout: killing
#   nspawn leaves the container running.
# - SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1: the host's cgroups are hybrid; the
#   container gets a pure cgroup2 tree, as systemd 252 expects.
# - --system-call-filter: nspawn 252's own seccomp filter refuses Landlock's
#   system calls (EPERM), which a host does not: without them `sockbroker
#   run` cannot install its lockdown in the container.
# - The runner unit is Type=exec (a oneshot waiting for the boot to finish
#   would wait for itself) and ends with `systemctl exit RC`, which powers the
#   container off and makes nspawn exit with RC.

nspawn_fail() {
  echo "${NSPAWN_NAME:-nspawn}: FAIL: $*" >&2
  exit 1
}

# Root is needed to boot containers; without it a test skips with a reason,
# unless CI (SOCKBROKER_TEST_REQUIRE_ROOT=1) forbids skipping.
# shellcheck source=../../skip_or_fail.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../skip_or_fail.sh"
nspawn_require_root() {
  sbtest_require_root "$1" "it boots systemd in a systemd-nspawn container"
}

nspawn_setup() {
  [ $# -eq 2 ] || { echo "usage: $0 ROOT STAGE" >&2; exit 64; }
  NSPAWN_NAME=$(basename "$0" .sh)
  NSPAWN_ROOT=$1
  NSPAWN_STAGE=$2
  nspawn_require_root "$NSPAWN_NAME"
  command -v systemd-nspawn >/dev/null || nspawn_fail "systemd-nspawn is not installed (scripts/deps.sh installs systemd-container)"
  [ -e "$NSPAWN_ROOT/.sockbroker-nspawn-root" ] ||
    nspawn_fail "no container root at $NSPAWN_ROOT: the ctest fixture nspawn_root makes it (make_root.sh)"
  [ -x "$NSPAWN_STAGE/usr/local/sbin/sockbrokerd" ] ||
    nspawn_fail "no staged install at $NSPAWN_STAGE: the ctest fixture nspawn_stage makes it (stage.sh)"
  NSPAWN_RUN=$(mktemp -d "/tmp/sockbroker-$NSPAWN_NAME.XXXXXX")
  chmod 0755 "$NSPAWN_RUN"
  mkdir -m 0755 "$NSPAWN_RUN/in" "$NSPAWN_RUN/units" "$NSPAWN_RUN/in/files"
  cp "$(dirname "${BASH_SOURCE[0]}")/inside.sh" "$NSPAWN_RUN/in/inside.sh"
  NSPAWN_BOOTS=0
  NSPAWN_OUT=
  _nspawn_cgroups=()
  trap _nspawn_exit EXIT
}

# nspawn_file PATH [MODE] < CONTENT: PATH (absolute) in the container.
nspawn_file() {
  local path=$NSPAWN_RUN/in/files$1
  mkdir -p "$(dirname "$path")"
  cat >"$path"
  chmod "${2:-0644}" "$path"
}

# nspawn_unit NAME < CONTENT: NAME is a unit (myapp.service) or a drop-in
# (sockbroker.service.d/watchdog.conf).
nspawn_unit() {
  local path=$NSPAWN_RUN/units/$1
  mkdir -p "$(dirname "$path")"
  cat >"$path"
  chmod 0644 "$path"
}

nspawn_boot() {
  local timeout=60 wants=()
  while [ $# -gt 0 ]; do
    case $1 in
      --wants) wants+=("systemd.wants=$2"); shift 2 ;;
      --timeout) timeout=$2; shift 2 ;;
      *) echo "nspawn_boot: unknown argument $1" >&2; return 64 ;;
    esac
  done
  timeout=$((timeout * ${SOCKBROKER_NSPAWN_TIME_SCALE:-1}))
  NSPAWN_BOOTS=$((NSPAWN_BOOTS + 1))
  NSPAWN_OUT=$NSPAWN_RUN/boot$NSPAWN_BOOTS
  mkdir -m 0755 "$NSPAWN_OUT"
  cat >"$NSPAWN_RUN/in/test.sh"
  _nspawn_write_runner

  # The container's own cgroup, below the one this script runs in.
  local cgroup=sockbroker-nspawn-$NSPAWN_NAME-$$-$NSPAWN_BOOTS dirs=() dir
  if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
    dirs=("/sys/fs/cgroup$(_nspawn_own_cgroup '^0::')/$cgroup")
  else
    [ -d /sys/fs/cgroup/unified ] || nspawn_fail "no cgroup2 hierarchy (/sys/fs/cgroup/unified) to give the container"
    dirs=("/sys/fs/cgroup/unified$(_nspawn_own_cgroup '^0::')/$cgroup"
          "/sys/fs/cgroup/systemd$(_nspawn_own_cgroup '^[0-9]*:name=systemd:')/$cgroup")
  fi
  for dir in "${dirs[@]}"; do
    dir=${dir//\/\///}
    mkdir "$dir" || nspawn_fail "cannot create cgroup $dir"
    _nspawn_cgroups+=("$dir")
  done

  local started=$SECONDS machine=sb-$NSPAWN_BOOTS-$$
  (
    for dir in "${_nspawn_cgroups[@]}"; do echo 0 >"$dir/cgroup.procs"; done
    exec env SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn --quiet \
      --directory="$NSPAWN_ROOT" --machine="$machine" \
      --register=no --keep-unit --boot --console=passive \
      --volatile=overlay --private-network \
      --system-call-filter="landlock_create_ruleset landlock_add_rule landlock_restrict_self" \
      --setenv=SYSTEMD_COLORS=0 \
      --bind-ro="$NSPAWN_STAGE/usr/local:/usr/local" \
      --bind-ro="$NSPAWN_RUN/in:/run/test/in" \
      --bind="$NSPAWN_OUT:/run/test/out" \
      --bind="$NSPAWN_RUN/units:/run/systemd/system" \
      systemd.wants=test-files.service systemd.wants=test-runner.service "${wants[@]}" \
      systemd.mask=console-getty.service
  ) </dev/null >"$NSPAWN_OUT/console.log" 2>&1 &
  local nspawn=$! status=0
  while kill -0 "$nspawn" 2>/dev/null && [ $((SECONDS - started)) -lt "$timeout" ]; do sleep 0.1; done
  if kill -0 "$nspawn" 2>/dev/null; then
    echo "$NSPAWN_NAME: the container did not finish within $timeout s; killing it" >&2
    _nspawn_read_journal_from_outside
    # 2>/dev/null: bash's notice that nspawn was killed quotes all of the above.
    { _nspawn_kill_cgroups; wait "$nspawn"; } 2>/dev/null || status=$?
    # What a killed nspawn leaves on the host (an exiting one removes it).
    rm -rf "/run/systemd/nspawn/propagate/$machine"
  else
    wait "$nspawn" || status=$?
  fi
  _nspawn_kill_cgroups
  _nspawn_remove_cgroups

  if [ -e "$NSPAWN_OUT/rc" ]; then
    status=$(cat "$NSPAWN_OUT/rc")
  else
    echo "$NSPAWN_NAME: the script did not finish (systemd-nspawn exited with $status)" >&2
    [ "$status" -ne 0 ] || status=1
  fi
  echo "--- the script's output (boot $NSPAWN_BOOTS, $((SECONDS - started)) s in all, exit status $status)"
  cat "$NSPAWN_OUT/test.log" 2>/dev/null || true
  if [ "$status" -ne 0 ]; then
    echo "--- the container's journal ($NSPAWN_OUT/journal.txt)"
    cat "$NSPAWN_OUT/journal.txt" 2>/dev/null || echo "(none)"
    echo "--- the container's console"
    cat "$NSPAWN_OUT/console.log"
  fi
  return "$status"
}

# The two units that run a test: one copies the files into place early, the
# other runs the script once the boot has finished and powers off.
_nspawn_write_runner() {
  cat >"$NSPAWN_RUN/units/test-files.service" <<'EOF'
[Unit]
Description=Put the test's files in place
DefaultDependencies=no
Before=sysinit.target
[Service]
Type=oneshot
RemainAfterExit=yes
# --no-overwrite-dir: the modes and owners of /, /etc, ... stay as they are.
ExecStart=/bin/sh -c 'tar -C /run/test/in/files -cf - . | tar -C / --no-overwrite-dir -xf -'
EOF
  cat >"$NSPAWN_RUN/units/test-runner.service" <<'EOF'
[Unit]
Description=The test script
After=test-files.service
[Service]
Type=exec
ExecStart=/bin/bash /run/test/in/runner.sh
EOF
  cat >"$NSPAWN_RUN/in/runner.sh" <<'EOF'
# The script runs in a bash of its own, so that `set -e` applies in it.
systemctl is-system-running --wait >/dev/null 2>&1 || true
rc=0
bash -c 'set -euo pipefail; source /run/test/in/inside.sh; source /run/test/in/test.sh' \
  </dev/null >/run/test/out/test.log 2>&1 || rc=$?
journalctl --boot --no-pager -o short-monotonic >/run/test/out/journal.txt 2>&1 || true
echo "$rc" >/run/test/out/rc
systemctl exit "$rc"
EOF
}

# This process's cgroup in the hierarchy whose /proc/self/cgroup line matches.
_nspawn_own_cgroup() {
  local path
  path=$(grep -m1 -E "$1" /proc/self/cgroup | cut -d: -f3-)
  [ "$path" = / ] && path=
  echo "$path"
}

_nspawn_pids() {
  local dir
  for dir in "${_nspawn_cgroups[@]}"; do
    [ -d "$dir" ] && find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -un
}

# After a timeout: the container's journal, read through its PID 1.
_nspawn_read_journal_from_outside() {
  local pid
  for pid in $(_nspawn_pids); do
    if [ "$(awk '/^NSpid:/ { print $NF }' "/proc/$pid/status" 2>/dev/null)" = 1 ] &&
       [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd ]; then
      timeout 10 nsenter --target "$pid" --all journalctl --boot --no-pager -o short-monotonic \
        >"$NSPAWN_OUT/journal.txt" 2>&1 || true
      return
    fi
  done
}

# Every process of the container (and nspawn), by cgroup: killing nspawn
# alone would leave the container running.
_nspawn_kill_cgroups() {
  local dir pid tries
  for ((tries = 0; tries < 50; tries++)); do
    [ -z "$(_nspawn_pids)" ] && return 0
    for dir in "${_nspawn_cgroups[@]}"; do
      [ -e "$dir/cgroup.kill" ] && echo 1 >"$dir/cgroup.kill" 2>/dev/null
    done
    for pid in $(_nspawn_pids); do kill -KILL "$pid" 2>/dev/null; done
    sleep 0.1
  done
  echo "$NSPAWN_NAME: processes left in ${_nspawn_cgroups[*]}: $(_nspawn_pids | tr '\n' ' ')" >&2
}

_nspawn_remove_cgroups() {
  local dir
  for dir in "${_nspawn_cgroups[@]}"; do
    [ -d "$dir" ] && find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  _nspawn_cgroups=()
}

_nspawn_exit() {
  local status=$?
  _nspawn_kill_cgroups
  _nspawn_remove_cgroups
  if [ -n "${NSPAWN_RUN:-}" ]; then
    if [ -n "${SOCKBROKER_TEST_KEEP_TEMP:-}" ]; then
      echo "$NSPAWN_NAME: kept $NSPAWN_RUN"
    else
      rm -rf "$NSPAWN_RUN"
    fi
  fi
  exit "$status"
}
