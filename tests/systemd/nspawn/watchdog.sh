#!/usr/bin/env bash
# The watchdog under a real systemd:
#   - the shipped WatchdogSec=30s reaches the broker (it pings every 15 s);
#   - with a drop-in WatchdogSec=1s (so that the test takes seconds), the
#     broker keeps pinging: systemd sees fresh WATCHDOG=1 and lets it run
#     for several intervals;
#   - a broker that stops pinging (SIGSTOP) is killed by systemd for the
#     watchdog and restarted (Restart=on-failure), and the new one serves.
#
# Usage: watchdog.sh ROOT STAGE (see lib.sh)
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

nspawn_boot --wants sockbroker.service <<'EOF'
step "the shipped WatchdogSec=30s"
unit_state_is sockbroker.service active/running || fail "sockbroker.service is $(unit_state sockbroker.service)"
[ "$(unit_property sockbroker.service WatchdogUSec)" = 30s ] ||
  fail "WatchdogUSec is $(unit_property sockbroker.service WatchdogUSec), the unit says 30s"
wait_for 5 "the broker to take WATCHDOG_USEC=30 s" journal_has sockbroker.service "systemd watchdog: .* every 15000 ms"

step "WatchdogSec=1s: the broker keeps pinging"
mkdir -p /etc/systemd/system/sockbroker.service.d
printf '[Service]\nWatchdogSec=1s\n' >/etc/systemd/system/sockbroker.service.d/watchdog.conf
systemctl daemon-reload
systemctl restart sockbroker.service
pid=$(unit_property sockbroker.service MainPID)
wait_for 5 "the broker to take WATCHDOG_USEC=1 s" journal_has sockbroker.service "systemd watchdog: .* every 500 ms"
# Every WATCHDOG=1 moves WatchdogTimestamp: see 6 of them (about 2.5 s, more
# than two intervals), with the broker never replaced.
pings=()
while [ "${#pings[@]}" -lt 6 ]; do
  ping=$(unit_property sockbroker.service WatchdogTimestampMonotonic)
  [ "${#pings[@]}" -gt 0 ] && [ "$ping" = "${pings[-1]}" ] || pings+=("$ping")
  [ "$(unit_property sockbroker.service MainPID)" = "$pid" ] || fail "the broker was replaced while it was pinging"
  [ "$(unit_property sockbroker.service NRestarts)" = 0 ] || fail "the broker was restarted while it was pinging"
  [ "${#pings[@]}" -lt 6 ] || break
  sleep 0.1
done
echo "pings at (monotonic us): ${pings[*]}"

step "SIGSTOP: systemd kills the broker for the watchdog and restarts it"
kill -STOP "$pid"
restarted() {
  [ "$(unit_property sockbroker.service NRestarts)" = 1 ] &&
    [ "$(unit_property sockbroker.service MainPID)" != "$pid" ] &&
    unit_state_is sockbroker.service active/running
}
wait_for 10 "sockbroker.service to be restarted" restarted
wait_for 5 "systemd to log the watchdog timeout" journal_has sockbroker.service "Watchdog timeout"
wait_for 5 "the unit to fail with result watchdog" journal_has sockbroker.service "Failed with result 'watchdog'"
[ ! -e "/proc/$pid" ] || fail "the stopped broker $pid is still there"
as_nobody sockbroker run -s web -- true || fail "the restarted broker does not serve"
echo "watchdog: PASS"
EOF
