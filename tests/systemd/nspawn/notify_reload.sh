#!/usr/bin/env bash
# Type=notify under a real systemd:
#   - sockbroker.service stays "activating" until the broker says READY=1
#     (its process is held stopped before it runs sockbrokerd: systemd must
#     not call it running), then is active with the broker's STATUS=;
#   - SIGHUP: the broker's RELOADING=1 takes the unit from running to reload,
#     its READY=1 back, and a socket added to the policy is served after;
#   - `systemctl reload` (ExecReload=) does the same; an invalid policy is
#     refused and changes nothing, and the unit stays running.
#
# Usage: notify_reload.sh ROOT STAGE (see lib.sh)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
nspawn_setup "$@"

nspawn_file /etc/sockbroker/policy.toml <<'EOF'
[socket.web]
listen = "127.0.0.1:80"

[[socket.web.allow]]
user = "nobody"
EOF

nspawn_boot --wants sockbroker.socket <<'EOF'
step "Type=notify: activating until READY=1"
# The shipped command, run by a shell that stops itself first. (If the unit's
# ExecStart= changes, change it here too.)
grep -qx 'ExecStart=/usr/local/sbin/sockbrokerd --audit journal' /usr/local/lib/systemd/system/sockbroker.service ||
  fail "sockbroker.service's ExecStart= changed: update this test's drop-in"
mkdir -p /etc/systemd/system/sockbroker.service.d
cat >/etc/systemd/system/sockbroker.service.d/held.conf <<'UNIT'
[Service]
ExecStart=
ExecStart=/bin/sh -c 'kill -STOP $$$$; exec /usr/local/sbin/sockbrokerd --audit journal'
UNIT
systemctl daemon-reload
[ "$(unit_property sockbroker.service Type)" = notify ] || fail "sockbroker.service is not Type=notify"
systemctl start --no-block sockbroker.service
held() {
  pid=$(unit_property sockbroker.service MainPID)
  [ "$pid" != 0 ] && [ "$(awk '{ print $3 }' "/proc/$pid/stat")" = T ]
}
wait_for 5 "the broker's process to stop itself" held
unit_state_is sockbroker.service activating/start ||
  fail "sockbroker.service is $(unit_state sockbroker.service) before the broker could send READY=1"
kill -CONT "$pid"
wait_for 5 "sockbroker.service to be active/running" unit_state_is sockbroker.service active/running
[ "$(unit_property sockbroker.service MainPID)" = "$pid" ] || fail "MainPID changed"
status=$(unit_property sockbroker.service StatusText)
echo "StatusText: $status"
[ "$status" = "serving 1 sockets" ] || fail "StatusText is \"$status\", not the broker's \"serving 1 sockets\""
rm /etc/systemd/system/sockbroker.service.d/held.conf
systemctl daemon-reload

step "SIGHUP: running -> reload (RELOADING=1) -> running (READY=1), with the new policy"
mkdir -p /etc/sockbroker/policy.d
cat >/etc/sockbroker/policy.d/50-extra.toml <<'TOML'
[socket.extra]
listen = "127.0.0.1:81"

[[socket.extra.allow]]
user = "nobody"
TOML
expect_status 65 as_nobody sockbroker run -s extra -- true
# PID 1 logs its units' state changes and the notifications it gets at debug level.
systemd-analyze log-level debug
kill -HUP "$pid"
transitions() { journalctl _PID=1 --boot --no-pager -o cat | grep -E "^sockbroker.service: (Changed|Got notification)"; }
wait_for 5 "the unit to return from reload to running" sh -c "journalctl _PID=1 --boot -o cat | grep -q '^sockbroker.service: Changed reload -> running'"
transitions
transitions | grep -A3 "RELOADING=1" | grep -q "Changed running -> reload" || fail "RELOADING=1 did not put the unit in reload"
transitions | grep -A3 "Changed running -> reload" | grep -A3 "READY=1" | grep -q "Changed reload -> running" ||
  fail "READY=1 did not end the reload"
systemd-analyze log-level info
unit_state_is sockbroker.service active/running || fail "sockbroker.service is $(unit_state sockbroker.service) after the reload"
status=$(unit_property sockbroker.service StatusText)
[[ "$status" == "serving 2 sockets, "* ]] || fail "StatusText is \"$status\" after the reload"
as_nobody sockbroker run -s extra -- true || fail "socket \"extra\" is not served after the reload"

step "systemctl reload, with one more socket"
cat >/etc/sockbroker/policy.d/60-more.toml <<'TOML'
[socket.more]
listen = "127.0.0.1:82"

[[socket.more.allow]]
user = "nobody"
TOML
systemctl reload sockbroker.service
# ExecReload= is a kill -HUP: systemctl returns before the broker has reloaded.
wait_for 5 "socket \"more\" to be served" as_nobody sockbroker run -s more -- true
wait_for 5 "sockbroker.service to be active/running" unit_state_is sockbroker.service active/running

step "an invalid policy: refused, nothing changes"
echo 'this is not toml' >/etc/sockbroker/policy.d/70-broken.toml
systemctl reload sockbroker.service
wait_for 5 "the refusal in StatusText" sh -c 'systemctl show -P StatusText sockbroker.service | grep -q refused'
unit_property sockbroker.service StatusText
wait_for 5 "sockbroker.service to be active/running" unit_state_is sockbroker.service active/running
as_nobody sockbroker run -s more -- true || fail "socket \"more\" is no longer served after a refused reload"
[ "$(unit_property sockbroker.service MainPID)" = "$pid" ] || fail "the broker was restarted"
[ "$(unit_property sockbroker.service NRestarts)" = 0 ] || fail "the broker was restarted"
echo "notify and reload: PASS"
EOF
