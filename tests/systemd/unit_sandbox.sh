#!/usr/bin/env bash
# sockbrokerd inside the sandbox its unit describes, without systemd as PID 1.
#
# The sandbox is read FROM THE UNIT FILE given, so that an edit to
# systemd/sockbroker.service is what gets tested (a unit whose
# SystemCallFilter= lacked seccomp once made the broker exit 71 under systemd,
# and nothing noticed). Emulated, the way systemd 252 applies them:
#   SystemCallFilter= (every line, in order: the first allow-list line makes
#     the filter default-deny and adds @default, later ~ lines remove; groups
#     expanded by `systemd-analyze syscall-filter`), SystemCallErrorNumber=,
#     SystemCallArchitectures=native                  -> sandbox_exec (seccomp)
#   RestrictAddressFamilies=, RestrictNamespaces=, MemoryDenyWriteExecute=,
#     LockPersonality=, RestrictRealtime=, RestrictSUIDSGID=, and the system
#     calls ProtectKernelModules=, ProtectKernelLogs=, ProtectKernelTunables=,
#     ProtectClock=, ProtectHostname= and PrivateDevices= take away
#                                                     -> sandbox_exec (seccomp)
#   CapabilityBoundingSet=, AmbientCapabilities=, NoNewPrivileges=
#                                                     -> setpriv
#   UMask=, LimitNOFILE=                              -> umask, ulimit
#   WatchdogSec= (WATCHDOG_USEC), Type=notify (NOTIFY_SOCKET, read back)
# Not emulated (each is named on the output): the mount namespace settings
# (ProtectSystem=, ReadWritePaths=, PrivateTmp=, ProcSubset=, ...), and
# ExecStart='s arguments: the broker gets this test's policy, control socket
# and audit file instead of --audit journal (there is no journald here).
#
# Then, in a private network and mount namespace, with a policy that takes
# every privileged path (port 80/tcp, 53/udp, a Unix path with owner, group
# and mode, a reuse_port group, a netns = "request" socket bound in another
# namespace): uid 65534 acquires each; `sockbroker reload` (adding a socket)
# and SIGHUP (removing it) are served; the broker is still alive and serving;
# SIGTERM stops it with status 0.
#
# Usage: unit_sandbox.sh [--self-check] UNIT SANDBOX_EXEC SOCKBROKERD SOCKBROKER
#   --self-check: proves the test catches the known regression: runs it against
#   a copy of UNIT without `seccomp` in SystemCallFilter=, where the broker
#   must exit 71 and the test must fail; passes if it does.
# Needs root: exits 77 (skip) without it, or fails when SOCKBROKER_TEST_REQUIRE_ROOT=1.
set -euo pipefail

name="unit sandbox"
fail() {
  echo "$name: FAIL: $*" >&2
  [ -f "${work:-/nonexistent}/broker.log" ] && sed 's/^/    broker: /' "$work/broker.log" >&2
  exit 1
}
step() { echo "==> $*"; }
note() { echo "    $*"; }

self_check=0
if [ "${1:-}" = --self-check ]; then self_check=1; shift; fi
[ $# -eq 4 ] || { echo "usage: $0 [--self-check] UNIT SANDBOX_EXEC SOCKBROKERD SOCKBROKER" >&2; exit 64; }
unit=$1 sandbox_exec=$2 sockbrokerd=$3 sockbroker=$4

# shellcheck source=../skip_or_fail.sh
source "$(dirname "${BASH_SOURCE[0]}")/../skip_or_fail.sh"
sbtest_require_root "$name" "network namespace, capabilities, uid 65534 clients"
for tool in systemd-analyze systemd-socket-activate setpriv ip ss; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (Debian packages systemd, util-linux, iproute2)"
done
[ -r "$unit" ] || fail "cannot read the unit $unit"

if [ "$self_check" = 1 ]; then
  name="unit sandbox self-check"
  work=$(mktemp -d /tmp/sockbroker-sandbox-selfcheck.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  # The unit as it was before the fix: seccomp out of every SystemCallFilter=
  # line, and a line left empty dropped (an empty one would reset the filter).
  sed -E '/^SystemCallFilter=/{s/(=|[[:space:]])seccomp([[:space:]]|$)/\1\2/g; /^SystemCallFilter=[[:space:]]*$/d}' \
    "$unit" >"$work/sockbroker.service"
  ! grep -Eq '^SystemCallFilter=.*(=|[[:space:]])seccomp([[:space:]]|$)' "$work/sockbroker.service" ||
    fail "could not remove seccomp from SystemCallFilter= in the copy"
  step "the test against a copy of $unit without seccomp in SystemCallFilter= (it must fail)"
  status=0
  bash "$0" "$work/sockbroker.service" "$sandbox_exec" "$sockbrokerd" "$sockbroker" >"$work/run.log" 2>&1 || status=$?
  sed 's/^/    | /' "$work/run.log"
  [ "$status" -ne 0 ] || fail "the test passed against a unit that denies seccomp(2): it cannot catch that regression"
  [ "$status" -ne 77 ] || fail "the test skipped instead of failing"
  grep -q "sockbrokerd exited with 71" "$work/run.log" || fail "the test failed, but not because the broker exited 71"
  echo "$name: PASS (the known-bad unit fails the test: the broker exits 71)"
  exit 0
fi

# A private network namespace (ports 80 and 53 are this test's) and a
# private mount namespace (`ip netns add` mounts under /run/netns).
if [ -z "${SOCKBROKER_UNIT_SANDBOX_NS:-}" ]; then
  exec unshare --net --mount --propagation private env SOCKBROKER_UNIT_SANDBOX_NS=1 bash "$0" "$@"
fi
ip link set lo up || fail "cannot bring lo up in the private network namespace"

# uid 65534 must reach the binaries' copies and the control socket.
work=$(mktemp -d /tmp/sockbroker-sandbox-test.XXXXXX)
chmod 0755 "$work"
pid='' notify_pid='' holder_pid='' netns=''
cleanup() {
  local p
  for p in "$holder_pid" "$pid" "$notify_pid"; do
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
  done
  [ -z "$netns" ] || ip netns delete "$netns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
install -m 0755 "$sockbroker" "$work/"
sockbroker="$work/$(basename "$sockbroker")"

# ---------------------------------------------------------------------------
# The unit: [Service] settings as "Key<TAB>value" lines, in file order, with
# comments dropped and continuation lines joined (systemd.syntax(7)).
awk '
  /^[[:space:]]*[#;]/ { next }
  {
    line = pending $0; pending = ""
    if (line ~ /\\$/) { pending = substr(line, 1, length(line) - 1) " "; next }
    if (line ~ /^[[:space:]]*\[/) { section = line; gsub(/[[:space:]]/, "", section); next }
    if (section != "[Service]" || line !~ /=/) next
    key = line; sub(/=.*/, "", key); gsub(/^[[:space:]]+|[[:space:]]+$/, "", key)
    value = line; sub(/^[^=]*=[[:space:]]*/, "", value); sub(/[[:space:]]+$/, "", value)
    print key "\t" value
  }' "$unit" >"$work/settings.tsv"
# Every value of KEY, one per line, in order.
values() { awk -F'\t' -v key="$1" '$1 == key { print $2 }' "$work/settings.tsv"; }
# The last value of KEY (what systemd keeps for a single-valued setting).
value() { values "$1" | tail -n 1; }
# Words separated by single spaces, none at either end.
squeeze() { tr -s ' \t\n' '   ' | sed 's/^ //; s/ $//'; }
enabled() { case "$(value "$1")" in yes | true | on | 1) return 0 ;; *) return 1 ;; esac; }

grep -Eq "^ExecStart[[:space:]]+[^[:space:]]*/sockbrokerd( |$)" "$work/settings.tsv" ||
  fail "$unit: no ExecStart= of sockbrokerd: is this the broker's unit?"

step "the sandbox, from $unit"
emulated=" Type ExecStart ExecReload Restart WatchdogSec LimitNOFILE CapabilityBoundingSet AmbientCapabilities
  NoNewPrivileges UMask ProtectKernelTunables ProtectKernelModules ProtectKernelLogs ProtectClock ProtectHostname
  PrivateDevices RestrictAddressFamilies RestrictNamespaces RestrictSUIDSGID RestrictRealtime LockPersonality
  MemoryDenyWriteExecute SystemCallArchitectures SystemCallFilter SystemCallErrorNumber "
emulated=$(squeeze <<<"$emulated")
while read -r key; do
  case " $emulated " in *" $key "*) ;; *) note "not emulated: $key=$(value "$key")" ;; esac
done < <(cut -f1 "$work/settings.tsv" | sort -u)

# --- SystemCallFilter=
declare -A expanded_groups=()
# The system calls one filter item stands for, groups expanded recursively.
expand() {
  local item=$1 line
  case "$item" in
    @*)
      [ -z "${expanded_groups[$item]:-}" ] || return 0  # a group nested twice
      expanded_groups[$item]=1
      local listing
      listing=$(systemd-analyze syscall-filter "$item" 2>&1) || fail "SystemCallFilter=: unknown group $item: $listing"
      while read -r line; do
        case "$line" in "" | "#"* | "$item") ;; @*) expand "$line" ;; *) echo "$line" ;; esac
      done <<<"$listing"
      ;;
    *) echo "$item" ;;
  esac
}
declare -A calls=()
mode=
while IFS= read -r line; do
  if [ -z "$line" ]; then mode='' calls=(); continue; fi  # an empty assignment resets
  invert=0
  if [ "${line:0:1}" = "~" ]; then invert=1 line=${line:1}; fi
  if [ -z "$mode" ]; then
    if [ "$invert" = 1 ]; then mode=deny; else mode=allow; fi
    if [ "$mode" = allow ]; then
      expanded=$(expand @default) || exit 1  # fail() in the substitution said why
      for call in $expanded; do calls[$call]=1; done
    fi
  fi
  for item in $line; do
    case "$item" in *:*) fail "SystemCallFilter=$item: a per-call errno is not emulated" ;; esac
    expanded=$(expand "$item") || exit 1
    for call in $expanded; do
      if { [ "$mode" = allow ] && [ "$invert" = 0 ]; } || { [ "$mode" = deny ] && [ "$invert" = 1 ]; }; then
        calls[$call]=1
      else
        unset "calls[$call]"
      fi
    done
  done
done < <(values SystemCallFilter)
sandbox=()
if [ -n "$mode" ]; then
  printf '%s\n' "${!calls[@]}" | sort >"$work/syscalls.txt"
  sandbox+=("--$mode" "$work/syscalls.txt")
  errno=$(value SystemCallErrorNumber)
  sandbox+=(--errno "${errno:-kill}")
  note "SystemCallFilter=: $mode-list of $(wc -l <"$work/syscalls.txt") calls, the others ${errno:-killed}$([ -z "$errno" ] || echo " (errno)")"
  if [ "$mode" = allow ] && [ -z "${calls[seccomp]:-}" ]; then note "seccomp(2) is NOT allowed"; fi
fi
archs=$(value SystemCallArchitectures)
[ -z "$archs" ] || [ "$archs" = native ] || fail "SystemCallArchitectures=$archs: only native is emulated"
note "SystemCallArchitectures=${archs:-(unset: emulated as native)}: other ABIs killed"

# --- Protect*=, PrivateDevices=: the system calls they take away (EPERM).
protect=()
if enabled ProtectKernelModules; then protect+=(@module); fi
if enabled ProtectKernelLogs; then protect+=(syslog); fi
if enabled ProtectKernelTunables; then protect+=(_sysctl); fi
if enabled ProtectClock; then protect+=(@clock); fi
if enabled ProtectHostname; then protect+=(sethostname setdomainname); fi
if enabled PrivateDevices; then protect+=(@raw-io); fi
if [ ${#protect[@]} -gt 0 ]; then
  : >"$work/protect.txt"
  for item in "${protect[@]}"; do expanded_groups=(); expand "$item" >>"$work/protect.txt"; done
  sandbox+=(--protect "$work/protect.txt")
  note "Protect*=, PrivateDevices=: ${protect[*]} fail with EPERM"
fi

# --- RestrictAddressFamilies=, RestrictNamespaces=, and the rest.
families=$(values RestrictAddressFamilies | tr '\n' ' ')
if [ -n "${families// /}" ]; then
  case "$families" in *"~"* | *none*) fail "RestrictAddressFamilies=$families: only an allow-list is emulated" ;; esac
  sandbox+=(--address-families "$(squeeze <<<"$families" | tr ' ' ',')")
  note "RestrictAddressFamilies=${families% }"
fi
namespaces=$(value RestrictNamespaces)
case "$namespaces" in
  "" | no | false | off | 0) ;;
  yes | true | on | 1) sandbox+=(--namespaces none) ;;
  "~"*) fail "RestrictNamespaces=$namespaces: a deny-list is not emulated" ;;
  *) sandbox+=(--namespaces "$(squeeze <<<"$namespaces" | tr ' ' ',')") ;;
esac
[ -z "$namespaces" ] || note "RestrictNamespaces=$namespaces"
if enabled MemoryDenyWriteExecute; then sandbox+=(--memory-deny-write-execute); note "MemoryDenyWriteExecute=yes"; fi
if enabled LockPersonality; then sandbox+=(--lock-personality); note "LockPersonality=yes"; fi
if enabled RestrictRealtime; then sandbox+=(--restrict-realtime); note "RestrictRealtime=yes"; fi
if enabled RestrictSUIDSGID; then sandbox+=(--restrict-suid-sgid); note "RestrictSUIDSGID=yes"; fi

# --- Capabilities: setpriv's names are lowercase, without cap_.
cap_list() { squeeze | tr ' ' '\n' | tr '[:upper:]' '[:lower:]' | sed -n "s/^cap_/$1/p" | paste -sd, -; }
privileges=()
bounding=$(values CapabilityBoundingSet | tr '\n' ' ')
if [ -n "${bounding// /}" ]; then
  case "$bounding" in *"~"*) fail "CapabilityBoundingSet=$bounding: a ~ list is not emulated" ;; esac
  bset="-all,$(cap_list + <<<"$bounding")"
else
  bset="+all"
fi
# What the Protect*= settings also take from the bounding set.
if enabled PrivateDevices; then bset+=",-mknod,-sys_rawio"; fi
if enabled ProtectKernelModules; then bset+=",-sys_module"; fi
if enabled ProtectKernelLogs; then bset+=",-syslog"; fi
if enabled ProtectClock; then bset+=",-sys_time,-wake_alarm"; fi
privileges+=(--bounding-set "$bset")
note "CapabilityBoundingSet=$bounding-> setpriv --bounding-set $bset"
ambient=$(values AmbientCapabilities | tr '\n' ' ')
if [ -n "${ambient// /}" ]; then
  privileges+=(--inh-caps "$(cap_list + <<<"$ambient")" --ambient-caps "$(cap_list + <<<"$ambient")")
else
  privileges+=(--ambient-caps -all)
fi
if enabled NoNewPrivileges; then privileges+=(--no-new-privs); note "NoNewPrivileges=yes"; fi

# --- UMask=, LimitNOFILE=
umask_value=$(value UMask)
umask_value=${umask_value:-0022}
nofile=$(value LimitNOFILE)
nofile_soft=${nofile%%:*} nofile_hard=${nofile##*:}
note "UMask=$umask_value, LimitNOFILE=${nofile:-(unset)}"
# As systemd sets it. The soft limit goes first when it comes down: a hard
# limit below the current soft one is refused (EINVAL), e.g. where PID 1 left
# both at 1048576.
set_nofile() {  # SOFT HARD
  ulimit -S -n "$1" 2>/dev/null
  ulimit -H -n "$2" && ulimit -S -n "$1"
}
if [ -n "$nofile" ] && ! (set_nofile "$nofile_soft" "$nofile_hard") 2>/dev/null; then
  # Raising a hard limit takes CAP_SYS_RESOURCE, which a container may lack;
  # PID 1 would have it. Test with the most this host allows.
  host_hard=$(ulimit -H -n)
  note "cannot raise RLIMIT_NOFILE to $nofile_hard here (no CAP_SYS_RESOURCE?): using the host's hard limit $host_hard"
  [ "$nofile_hard" = unlimited ] || [ "$nofile_hard" -gt "$host_hard" ] && nofile_hard=$host_hard
  [ "$nofile_soft" = unlimited ] || [ "$nofile_soft" -gt "$nofile_hard" ] && nofile_soft=$nofile_hard
fi

# --- Type=notify and WatchdogSec=: a notify socket the broker reports to.
environment=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)
# A sanitized build (SOCKBROKER_SANITIZE) keeps the sanitizers' settings, but
# not the leak check: LeakSanitizer's tracer needs ptrace(2), which no
# @system-service unit allows (and no such unit runs a sanitized broker).
# (grep without -q: under pipefail, a grep that quits at the first match
# can kill ldd with SIGPIPE and make the whole test fail.)
if ldd "$sockbrokerd" 2>/dev/null | grep libasan >/dev/null; then
  environment+=(ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
  [ -z "${UBSAN_OPTIONS:-}" ] || environment+=(UBSAN_OPTIONS="$UBSAN_OPTIONS")
  note "sanitized build: the broker runs with detect_leaks=0 (LeakSanitizer needs ptrace)"
fi
if [ "$(value Type)" = notify ]; then
  # systemd-socket-activate hands the datagram socket to cat, which appends
  # every notification the broker sends to notify.log.
  # shellcheck disable=SC2016 # $0 is expanded by the inner bash
  systemd-socket-activate --datagram -l "$work/notify.sock" bash -c 'exec cat <&3 >>"$0"' "$work/notify.log" \
    2>"$work/notify.err" &
  notify_pid=$!
  for _ in $(seq 50); do [ -S "$work/notify.sock" ] && break; sleep 0.1; done
  [ -S "$work/notify.sock" ] || fail "systemd-socket-activate did not create the notify socket"
  environment+=(NOTIFY_SOCKET="$work/notify.sock")
fi
watchdog=$(value WatchdogSec)
if [ -n "$watchdog" ]; then
  case "$watchdog" in
    *ms) usec=$((${watchdog%ms} * 1000)) ;;
    *min) usec=$((${watchdog%min} * 60000000)) ;;
    *s) usec=$((${watchdog%s} * 1000000)) ;;
    *[!0-9]*) fail "WatchdogSec=$watchdog: only N, Nms, Ns and Nmin are emulated" ;;
    *) usec=$((watchdog * 1000000)) ;;
  esac
  environment+=(WATCHDOG_USEC="$usec")
fi

# ---------------------------------------------------------------------------
# The policy: one socket per privileged path of the broker.
netns=sockbroker-sandbox-$$
ip netns add "$netns" || fail "ip netns add $netns"
ip -n "$netns" link set lo up || fail "cannot bring lo up in $netns"
mkdir -m 0755 "$work/run" "$work/sockets"
control="$work/run/control.sock"
unix_path="$work/sockets/app.sock"
cat >"$work/policy.toml" <<TOML
[broker]
control_mode = "0666"

[socket.web]          # a port below 1024: CAP_NET_BIND_SERVICE
listen = "127.0.0.1:80"
[[socket.web.allow]]
user = 65534

[socket.dns]
listen = "127.0.0.1:53"
type = "datagram"
[[socket.dns.allow]]
user = 65534

[socket.app]          # chown and chmod of the path; a mode root cannot write keeps CAP_DAC_OVERRIDE
listen = "$unix_path"
socket_user = "nobody"
socket_group = "nogroup"
socket_mode = "0600"
[[socket.app.allow]]
user = 65534

[socket.workers]      # every grant a new SO_REUSEPORT member
listen = "127.0.0.1:8080"
reuse_port = true
[[socket.workers.allow]]
user = 65534

[socket.container]    # bound at grant time in the namespace the client sends: setns
listen = "127.0.0.1:443"
netns = "request"
netns_path = "/run/netns/sockbroker-sandbox-*"   # found by listing /run/netns
[[socket.container.allow]]
user = 65534
TOML

step "sockbrokerd under the unit's sandbox (setpriv, sandbox_exec)"
(
  umask "$umask_value"
  if [ -n "$nofile" ]; then set_nofile "$nofile_soft" "$nofile_hard" || exit 125; fi
  exec env -i "${environment[@]}" setpriv "${privileges[@]}" -- \
    "$sandbox_exec" "${sandbox[@]}" -- \
    "$sockbrokerd" --policy "$work/policy.toml" --control "$control" --audit "$work/audit.log"
) 2>"$work/broker.log" &
pid=$!
for _ in $(seq 100); do
  grep -q "ready on" "$work/broker.log" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if ! kill -0 "$pid" 2>/dev/null; then
  status=0
  wait "$pid" || status=$?
  pid=
  fail "sockbrokerd exited with $status before it was ready"
fi
grep -q "ready on" "$work/broker.log" || fail "sockbrokerd did not get ready within 10 s"
grep "confined:" "$work/broker.log" | sed 's/^/    /' || fail "the broker did not confine itself"
grep -q "seccomp allow-list" "$work/broker.log" || fail "the broker did not install its own seccomp filter"

step "the sandbox is in place (/proc/$pid/status, /proc/$pid/limits)"
[ "$(readlink "/proc/$pid/exe")" = "$(readlink -f "$sockbrokerd")" ] || fail "pid $pid is not sockbrokerd"
proc_field() { sed -n "s/^$1:[[:space:]]*//p" "/proc/$pid/status"; }
filters=$(proc_field Seccomp_filters)
note "Seccomp_filters: $filters (the unit's, then the broker's own)"
[ "$filters" -ge 2 ] || fail "the broker runs under $filters seccomp filter(s), expected the unit's and its own"
if enabled NoNewPrivileges; then [ "$(proc_field NoNewPrivs)" = 1 ] || fail "no_new_privs is not set"; fi
[ "$(proc_field Umask)" = "$(printf '%04o' "$((8#$umask_value))")" ] || fail "umask is $(proc_field Umask), the unit says $umask_value"
if [ -n "$nofile" ]; then
  limits=$(awk '/^Max open files/ { print $4 ":" $5 }' "/proc/$pid/limits")
  note "Max open files: $limits"
  [ "$limits" = "$nofile_soft:$nofile_hard" ] || fail "RLIMIT_NOFILE is $limits, expected $nofile_soft:$nofile_hard"
fi
if [ -n "${bounding// /}" ]; then
  # The broker narrows the bounding set further; it must never hold more.
  held=$(capsh --decode="$(proc_field CapBnd)" | sed 's/^[^=]*=//')
  note "CapBnd: ${held:-(empty)}"
  wanted=" $(squeeze <<<"$bounding" | tr '[:upper:]' '[:lower:]') "
  for cap in ${held//,/ }; do
    case "$wanted" in *" $cap "*) ;; *) fail "the bounding set holds $cap, which CapabilityBoundingSet= does not list" ;; esac
  done
fi
if [ -n "${notify_pid}" ]; then
  grep -q "READY=1" "$work/notify.log" 2>/dev/null || fail "no READY=1 on the notify socket"
  note "notify socket: READY=1 received"
fi

as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
get() {  # NAME [sockbroker get options]: acquire NAME as uid 65534
  local socket=$1
  shift
  as_nobody "$sockbroker" --control "$control" get "$@" "$socket" -- true ||
    fail "uid 65534 could not acquire \"$socket\" from the sandboxed broker"
}

step "as uid 65534: acquire web (80/tcp), dns (53/udp), app (Unix path), workers (reuse_port, twice)"
for socket in web dns app workers workers; do get "$socket"; done
[ "$(stat -c '%U:%G %a %F' "$unix_path")" = "nobody:nogroup 600 socket" ] ||
  fail "$unix_path is $(stat -c '%U:%G %a %F' "$unix_path"), the policy says nobody:nogroup 0600"
ss -Hltn 'sport = :80' | grep . >/dev/null || fail "nothing listens on port 80"
ss -Hlun 'sport = :53' | grep . >/dev/null || fail "no UDP socket on port 53"

step "as uid 65534: acquire container (netns = \"request\") in /run/netns/$netns"
# Not through as_nobody: $! must be the process that becomes sleep, to stop it.
setpriv --reuid=65534 --regid=65534 --clear-groups \
  "$sockbroker" --control "$control" get --netns "/run/netns/$netns" container -- sleep 10 &
holder_pid=$!
for _ in $(seq 50); do
  ip netns exec "$netns" ss -Hltn 'sport = :443' | grep . >/dev/null && break
  kill -0 "$holder_pid" 2>/dev/null || break
  sleep 0.1
done
ip netns exec "$netns" ss -Hltn 'sport = :443' | grep . >/dev/null ||
  fail "no socket listens on 127.0.0.1:443 in $netns: the broker could not bind it there"
! ss -Hltn 'sport = :443' | grep . >/dev/null || fail "container was bound in the broker's namespace, not in $netns"
kill -TERM "$holder_pid" 2>/dev/null || true
wait "$holder_pid" 2>/dev/null || true
holder_pid=

step "sockbroker reload (as root) with a socket added to the policy"
cat >>"$work/policy.toml" <<'TOML'

[socket.extra]
listen = "127.0.0.1:81"
[[socket.extra.allow]]
user = 65534
TOML
"$sockbroker" --control "$control" reload || fail "sockbroker reload failed under the sandbox"
get extra

step "SIGHUP with that socket removed again"
sed -i '/^\[socket.extra\]/,$d' "$work/policy.toml"
kill -HUP "$pid"
for _ in $(seq 50); do
  [ "$(grep -c '"event":"reload"' "$work/audit.log" || true)" -ge 2 ] && break
  sleep 0.1
done
[ "$(grep -c '"event":"reload"' "$work/audit.log" || true)" -ge 2 ] || fail "no reload event after SIGHUP"
! ss -Hltn 'sport = :81' | grep . >/dev/null || fail "port 81 is still bound after SIGHUP removed it"

step "still alive and serving"
kill -0 "$pid" 2>/dev/null || fail "sockbrokerd died"
listing=$(as_nobody "$sockbroker" --control "$control" list --json) || fail "sockbroker list failed"
grep -q '"web"' <<<"$listing" || fail "the listing does not show \"web\": $listing"
get web
if grep -q '"event":"bad_request"\|"event":"bind_failed"' "$work/audit.log"; then
  grep '"event":"bad_request"\|"event":"bind_failed"' "$work/audit.log" >&2
  fail "the audit log shows failures"
fi

step "SIGTERM"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
[ "$status" -eq 0 ] || fail "sockbrokerd exited with $status after SIGTERM"
grep -q '"event":"stop"' "$work/audit.log" || fail "no stop event in the audit log"
grants=$(grep -c '"event":"grant"' "$work/audit.log" || true)
[ "$grants" -ge 8 ] || fail "$grants grants in the audit log, expected 8"
note "$grants grants, 2 reloads, clean stop"
echo "$name: PASS"
