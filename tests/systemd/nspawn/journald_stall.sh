#!/usr/bin/env bash
# A stalled journald under a real systemd. The shipped unit sends the audit
# to the journal (--audit journal) and the log to journald's stream socket;
# here journald is stopped (SIGSTOP: in life, a journald stuck on a slow
# disk) while the broker keeps being asked:
#   - the broker answers every request: refusals of unknown names go on until
#     journald's queue is full, then a grant is refused (audit_failure =
#     "deny") naming the audit trail, and `sockbroker status` says why;
#   - the watchdog stays fed (WatchdogSec=2s here): systemd does not kill a
#     healthy broker for a sick journald;
#   - `systemctl restart` meanwhile loses nothing either: the stopping broker
#     leaves the lines it could not write in systemd's file descriptor store,
#     and the next one writes them first;
#   - once journald reads again, grants resume, and the journal holds every
#     refusal made meanwhile (once) and an audit_resumed event: nothing was
#     lost.
#
# Usage: journald_stall.sh ROOT STAGE (see lib.sh)
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
nspawn_unit sockbroker.service.d/watchdog.conf <<'EOF'
[Service]
WatchdogSec=2s
EOF

nspawn_boot --wants sockbroker.service <<'EOF'
audit_field() { sockbroker status --json | python3 -c "import json, sys; print(json.load(sys.stdin)['audit']['$1'])"; }
audit_is() { [ "$(audit_field state)" = "$1" ]; }
refusals_in_journal() {
  journalctl -t sockbrokerd SOCKBROKER_EVENT=deny SOCKBROKER_REASON=unknown_socket -o json | grep -c . || true
}

step "before: a grant, in the journal"
as_nobody sockbroker run -s web -- true || fail "not granted with journald running"
wait_for 5 "the grant in the journal" sh -c 'journalctl -t sockbrokerd SOCKBROKER_EVENT=grant -o json | grep -q .'
broker=$(unit_property sockbroker.service MainPID)
journald=$(unit_property systemd-journald.service MainPID)
[ "$journald" -gt 0 ] || fail "no journald"
echo "broker $broker, journald $journald, net.unix.max_dgram_qlen $(cat /proc/sys/net/unix/max_dgram_qlen)"

step "journald stopped: the broker answers every request until its queue is full"
kill -STOP "$journald"
refusals=0
while [ "$(audit_field state)" != failing ]; do
  for _ in $(seq 25); do
    # Root's refusals are never rate-limited: one audit line each. A broker
    # waiting on journald would not answer (the CLI gives up after 10 s: 69).
    expect_status 65 sockbroker get nosuch -- true 2>/dev/null
    refusals=$((refusals + 1))
  done
  [ "$refusals" -lt 3000 ] || fail "$refusals audit lines and journald, stopped, never refused one"
done
echo "the audit trail fails after $refusals refusals: $(audit_field error)"

step "while journald sleeps: grants refused and why, the watchdog fed"
out=$(as_nobody sockbroker run -s web -- true 2>&1) && fail "granted while the audit cannot be written"
echo "$out" | grep -q "audit trail" || fail "the refusal does not name the audit trail: $out"
sockbroker status | grep -q "Audit: FAILING since" || fail "status does not say the audit is failing"
sleep 5  # two and a half watchdog intervals
[ "$(unit_property sockbroker.service MainPID)" = "$broker" ] || fail "the broker was replaced while journald slept"
[ "$(unit_property sockbroker.service NRestarts)" = 0 ] || fail "the broker was restarted while journald slept"
unit_state_is sockbroker.service active/running || fail "sockbroker.service is $(unit_state sockbroker.service)"

step "a restart while journald sleeps: the unwritten lines wait in systemd's store"
wait_for 5 "status to say systemd's store and the file next to the control socket have the waiting lines" sh -c "sockbroker status | grep -qF \"line(s) waiting (copies in systemd's store and in /run/sockbroker/control.sock.audit-unwritten: the next broker writes them)\""
echo "waiting: $(audit_field lines_waiting) line(s), kept in the store: $(audit_field kept_in_store)"
systemctl restart sockbroker.service
new_broker=$(unit_property sockbroker.service MainPID)
[ "$new_broker" != "$broker" ] || fail "the broker was not restarted"
broker=$new_broker
unit_state_is sockbroker.service active/running || fail "sockbroker.service is $(unit_state sockbroker.service)"
[ "$(audit_field state)" = failing ] || fail "the new broker's audit is $(audit_field state) with journald stopped"
as_nobody sockbroker run -s web -- true 2>/dev/null && fail "granted by the new broker while the audit cannot be written"

step "journald reads again: grants resume, nothing lost"
kill -CONT "$journald"
wait_for 10 "a grant again" as_nobody sockbroker run -s web -- true
wait_for 10 "audit_resumed in the journal" sh -c 'journalctl -t sockbrokerd SOCKBROKER_EVENT=audit_resumed -o json | grep -q .'
wait_for 10 "all $refusals refusals in the journal" sh -c "[ \"\$(journalctl -t sockbrokerd SOCKBROKER_EVENT=deny SOCKBROKER_REASON=unknown_socket -o json | grep -c .)\" -ge $refusals ]"
[ "$(refusals_in_journal)" -eq "$refusals" ] || fail "$(refusals_in_journal) refusals in the journal, $refusals made"
# journald works through its backlog (the refusals, both brokers' log lines)
# first, and the broker's lines wait on it meanwhile (fed every 10 ms).
wait_for 10 "the audit trail to be ok again" audit_is ok
[ "$(audit_field lines_lost)" = 0 ] || fail "$(audit_field lines_lost) audit lines lost"
starts=$(journalctl -t sockbrokerd SOCKBROKER_EVENT=start -o json | grep -c . || true)
[ "$starts" = 2 ] || fail "$starts start events in the journal, not 2"
stops=$(journalctl -t sockbrokerd SOCKBROKER_EVENT=stop -o json | grep -c . || true)
[ "$stops" = 1 ] || fail "$stops stop events in the journal: the first broker's, written by the second, is missing"
[ "$(unit_property sockbroker.service MainPID)" = "$broker" ] || fail "the broker was replaced"
echo "journald_stall: PASS"
EOF
