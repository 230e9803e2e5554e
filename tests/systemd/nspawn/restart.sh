#!/usr/bin/env bash
# Broker restarts under a real systemd, with the shipped units and a service
# holding port 80 (myapp.service as myapp.sh runs it: the installed example
# with the demo HTTP server), while a loop of requests to port 80 runs:
#   - `systemctl restart sockbroker.service` and a `kill -9` of the broker
#     (Restart=on-failure brings it back): the new broker adopts the socket
#     from systemd's file descriptor store (same inode), the holder and its
#     lease; myapp.service is never restarted and no request fails;
#   - the adopted lease is a real one: `sockbroker revoke web` reaches the
#     holder through the watch that `sockbroker run` makes again after each
#     restart; it SIGTERMs its program, exits non-zero, and myapp.service's
#     Restart=on-failure starts it again on the socket the broker bound afresh;
#   - a stop empties the store (systemd 252): stopping sockbroker.socket with
#     the service stops myapp.service too (Requires=), and the next broker
#     binds port 80 afresh; stopping sockbroker.service alone leaves myapp
#     serving on its socket, and the next broker's bind fails (address in
#     use) and is retried until myapp lets port 80 go.
#
# Usage: restart.sh ROOT STAGE (see lib.sh)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
nspawn_setup "$@"

nspawn_file /etc/sockbroker/policy.toml <<'EOF'
[socket.web]
listen = "0.0.0.0:80"

[[socket.web.allow]]
user = "www-data"
unit = "myapp.service"
EOF

nspawn_boot --wants sockbroker.service --timeout 90 <<'EOF'
step "myapp.service serving port 80 (the installed example, with sockbroker-demo-httpd)"
cp /usr/local/share/doc/sockbroker/examples/myapp.service /etc/systemd/system/
grep -qx 'ExecStart=/usr/local/bin/sockbroker run -s web -- /usr/local/bin/myapp' /etc/systemd/system/myapp.service ||
  fail "the installed myapp.service does not run /usr/local/bin/myapp through sockbroker run -s web"
grep -qx 'Restart=on-failure' /etc/systemd/system/myapp.service ||
  fail "the installed myapp.service no longer says Restart=on-failure: the revoke step below expects it"
mkdir /etc/systemd/system/myapp.service.d
cat >/etc/systemd/system/myapp.service.d/demo.conf <<'UNIT'
[Service]
ExecStart=
ExecStart=/usr/local/bin/sockbroker run -s web -- /usr/local/bin/sockbroker-demo-httpd
UNIT
systemctl daemon-reload
unit_state_is sockbroker.service active/running || fail "the broker is $(unit_state sockbroker.service)"

# The listening sockets on port 80, one line each, with their holders and
# inode. 2>/dev/null: ss -e cannot name the cgroup of a socket whose creator's
# cgroup is gone (a previous broker's) and says so on stderr.
port80() { ss -Hltnpe 'sport = :80' 2>/dev/null; }
inode_on_port80() { port80 | grep -o 'ino:[0-9]*' | cut -d: -f2; }
# held_by COMM PID: that process holds the listening socket on port 80.
held_by() { port80 | grep -qF "(\"$1\",pid=$2,"; }
# said PID PATTERN: the broker with that pid logged a line matching PATTERN.
said() { journalctl --boot _PID="$1" --no-pager -o cat | grep -qE -- "$2"; }
the_httpd() { pgrep -x -P "$(unit_property myapp.service MainPID)" sockbroker-demo; }

# start_myapp: myapp.service started and answering; sets app (its MainPID,
# the `sockbroker run` holding the grant), httpd (the program) and inode.
start_myapp() {
  systemctl start myapp.service
  wait_for 5 "an answer on port 80" curl -sS --max-time 1 http://127.0.0.1:80/
  app=$(unit_property myapp.service MainPID)
  httpd=$(the_httpd)
  inode=$(inode_on_port80)
  [ "$(port80 | wc -l)" = 1 ] || fail "port 80 should have one listening socket: $(port80)"
  held_by sockbroker-demo "$httpd" || fail "myapp's program $httpd does not hold port 80: $(port80)"
  echo "myapp.service: sockbroker run $app, program $httpd, port 80 on socket ino:$inode"
}

# The broker, its holder and systemd's store on the one socket myapp has had
# from the start; myapp.service untouched.
check_undisturbed() {
  local broker=$1 now
  now=$(port80)
  echo "$now"
  [ "$(wc -l <<<"$now")" = 1 ] || fail "port 80 should have one listening socket: $now"
  [ "$(inode_on_port80)" = "$inode" ] || fail "port 80 is now socket ino:$(inode_on_port80), not ino:$inode"
  held_by sockbrokerd "$broker" || fail "the broker $broker does not hold port 80's socket"
  held_by systemd 1 || fail "systemd's file descriptor store does not hold port 80's socket"
  held_by sockbroker-demo "$httpd" || fail "myapp's program $httpd no longer holds port 80's socket"
  [ "$(unit_property myapp.service MainPID)" = "$app" ] || fail "myapp.service has another MainPID"
  [ "$(unit_property myapp.service NRestarts)" = 0 ] || fail "myapp.service was restarted"
  unit_state_is myapp.service active/running || fail "myapp.service is $(unit_state myapp.service)"
}

# A request to port 80 about every 10 ms, in the background: one byte
# appended to /run/requests.ok per answer, a line per failure (refused, reset,
# timed out) to /run/requests.failed.
request_loop() {
  rm -f /run/requests.stop /run/requests.ok /run/requests.failed
  touch /run/requests.ok
  (
    while [ ! -e /run/requests.stop ]; do
      if error=$(curl -sS -o /dev/null --connect-timeout 1 --max-time 2 http://127.0.0.1:80/ 2>&1); then
        printf . >>/run/requests.ok
      else
        echo "$(date +%T.%N): $error" >>/run/requests.failed
      fi
      sleep 0.01
    done
  ) &
  loop=$!
}
answered() { stat -c %s /run/requests.ok; }
answered_more_than() { [ "$(answered)" -gt "$1" ]; }
# no_failed_request WHEN: the requests made meanwhile all got answers, and
# a few more since, so that none that was under way is left unseen.
no_failed_request() {
  local seen
  seen=$(answered)
  wait_for 5 "requests to port 80 to be answered $1" answered_more_than $((seen + 3))
  [ ! -s /run/requests.failed ] || fail "requests to port 80 failed $1: $(cat /run/requests.failed)"
  echo "requests to port 80: $(answered) answered, none failed"
}
stop_request_loop() {
  touch /run/requests.stop
  wait "$loop"
}

start_myapp
broker=$(unit_property sockbroker.service MainPID)
held_by sockbrokerd "$broker" || fail "the broker $broker does not hold port 80's socket: $(port80)"
request_loop
wait_for 5 "the first answers to the request loop" answered_more_than 3

step "systemctl restart sockbroker.service: the new broker adopts the socket and the lease"
systemctl restart sockbroker.service
restarted=$(unit_property sockbroker.service MainPID)
[ "$restarted" != "$broker" ] || fail "sockbroker.service still has MainPID $broker"
# READY=1 comes after adoption: the socket is the broker's when restart returns.
check_undisturbed "$restarted"
wait_for 5 "the restarted broker to log its adoption" \
  said "$restarted" '^info: adopted 1 socket\(s\), 1 holder\(s\) with 1 lease\(s\) from the previous broker$'
no_failed_request "during the restart"

step "kill -9 of the broker: Restart=on-failure, and the same adoption"
kill -KILL "$restarted"
back() {
  [ "$(unit_property sockbroker.service NRestarts)" = 1 ] &&
    [ "$(unit_property sockbroker.service MainPID)" != "$restarted" ] &&
    unit_state_is sockbroker.service active/running
}
wait_for 10 "sockbroker.service to be restarted" back
killed=$restarted
restarted=$(unit_property sockbroker.service MainPID)
wait_for 5 "systemd to log the crash" journal_has sockbroker.service "Main process exited, code=killed, status=9/KILL"
check_undisturbed "$restarted"
wait_for 5 "the restarted broker to log its adoption" \
  said "$restarted" '^info: adopted 1 socket\(s\), 1 holder\(s\) with 1 lease\(s\) from the previous broker$'
no_failed_request "while the broker was killed and restarted"
stop_request_loop
[ ! -e "/proc/$killed" ] || fail "the killed broker $killed is still there"

step "sockbroker list: the lease survived both"
sockbroker list
sockbroker list --json | python3 -c '
import json, sys
inode = int(sys.argv[1])
web = [s for s in json.load(sys.stdin)["sockets"] if s["name"] == "web"]
assert len(web) == 1, "no socket web in the list"
web = web[0]
assert web["state"] == "bound", "web is %s" % web["state"]
assert web["holders"] == 1, "web has %d holders" % web["holders"]
assert web["inodes"] == [inode], "web is socket %s, not ino:%d" % (web["inodes"], inode)
' "$inode" || fail "sockbroker list does not show web bound on the same socket with its holder"

step "sockbroker revoke web: the watch reaches sockbroker run, which stops its program"
# sockbroker run lost its watch at each restart and makes it again (after
# 100 ms, then backing off): a revoke before that would not be heard.
reconnected() {
  [ "$(journalctl --unit=myapp.service --boot --no-pager -o cat |
       grep -c 'sockbroker run: connected to the broker again; revocations are heard')" -ge 2 ]
}
wait_for 10 "sockbroker run to watch the restarted broker" reconnected
revoked=$(sockbroker revoke web)
echo "$revoked"
grep -qF "1 holder(s) shut down (pid $app)" <<<"$revoked" || fail "the revoke did not reach the adopted holder $app"
wait_for 5 "sockbroker run to hear the revoke" journal_has myapp.service \
  'the broker revoked "web": .*; sending SIGTERM to the program \(--on-revoke=term\)'
wait_for 5 "myapp's program $httpd to exit" test ! -e "/proc/$httpd"
# The program dies of the SIGTERM; sockbroker run exits with 128 + 15, a
# failure to systemd, so that Restart=on-failure (RestartSec=2 in the
# example) brings the service back on the socket the broker bound afresh.
relaunched() {
  [ "$(unit_property myapp.service NRestarts)" = 1 ] && unit_state_is myapp.service active/running &&
    [ "$(unit_property myapp.service MainPID)" != "$app" ]
}
wait_for 10 "Restart=on-failure to start myapp.service again" relaunched
journalctl --unit=myapp.service --boot --no-pager -o cat | grep -E 'revoked|Main process exited|Scheduled restart'
wait_for 5 "an answer on port 80 again" curl -sS --max-time 1 http://127.0.0.1:80/
old_inode=$inode
app=$(unit_property myapp.service MainPID)
httpd=$(the_httpd)
inode=$(inode_on_port80)
port80
[ "$inode" != "$old_inode" ] || fail "port 80 is still the revoked socket ino:$old_inode"
held_by sockbrokerd "$restarted" && held_by sockbroker-demo "$httpd" ||
  fail "the broker and myapp's new program $httpd do not share the socket bound afresh"
# The revoked socket left the store with the broker's next sync.
wait_for 5 "systemd to let go of the revoked socket" sh -c "! ls -l /proc/1/fd | grep -qF 'socket:[$old_inode]'"
held_by systemd 1 || fail "the socket bound afresh is not in systemd's store"

step "systemctl stop sockbroker.service sockbroker.socket; systemctl start sockbroker.socket sockbroker.service"
# myapp.service Requires=sockbroker.socket: stopping the socket unit stops
# myapp.service too, so nothing holds port 80 then. And a stop empties the
# store on systemd 252 (FileDescriptorStorePreserve= is v254's), so no one
# does: port 80 is free, and the next broker binds it afresh.
systemctl stop sockbroker.service sockbroker.socket
if unit_state_is myapp.service active/running; then fail "myapp.service runs on without sockbroker.socket"; fi
[ -z "$(port80)" ] || fail "port 80 is still held after the stop: $(port80)"
systemctl start sockbroker.socket sockbroker.service
fresh=$(unit_property sockbroker.service MainPID)
wait_for 5 "the new broker to bind port 80" said "$fresh" '^info: socket "web": bound 0\.0\.0\.0:80'
if said "$fresh" 'adopted'; then fail "the broker adopted something after a stop"; fi
port80
held_by sockbrokerd "$fresh" || fail "the new broker does not hold port 80"
[ "$(inode_on_port80)" != "$inode" ] || fail "port 80 is the socket from before the stop"

step "myapp.service holding port 80 while sockbroker.service alone stops and starts"
# The store is emptied again, but myapp keeps its socket and serves on: the
# new broker's bind fails (address in use) and is retried with backoff (1 s,
# then twice as long) until myapp lets port 80 go. (sockbroker run's watch,
# reconnecting through sockbroker.socket, may start the broker before the
# `systemctl start` below does.)
start_myapp
request_loop
wait_for 5 "the first answers to the request loop" answered_more_than 3
systemctl stop sockbroker.service
systemctl start sockbroker.service
broker=$(unit_property sockbroker.service MainPID)
[ "$broker" != "$fresh" ] || fail "sockbroker.service was not stopped"
wait_for 5 "the new broker to fail to bind port 80" \
  said "$broker" '^error: socket "web": cannot bind 0\.0\.0\.0:80: .*Address already in use; trying again in 1 s \(attempt 1\)$'
if said "$broker" 'adopted'; then fail "the broker adopted something after a stop"; fi
sockbroker list
sockbroker list | grep -qE '^web +stream +0\.0\.0\.0:80 +failed +0 ' || fail "sockbroker list does not show web failed, without holders"
port80
[ "$(inode_on_port80)" = "$inode" ] && held_by sockbroker-demo "$httpd" || fail "myapp's program lost port 80's socket"
if held_by sockbrokerd "$broker"; then fail "the broker holds port 80 while myapp does"; fi
unit_state_is myapp.service active/running && [ "$(unit_property myapp.service MainPID)" = "$app" ] ||
  fail "myapp.service was disturbed: $(unit_state myapp.service), MainPID $(unit_property myapp.service MainPID)"
no_failed_request "while the broker was stopped and started"
stop_request_loop
systemctl stop myapp.service
# The next retry (1, 3 or 7 s after the broker started) finds port 80 free.
wait_for 15 "the broker to bind port 80 once myapp let it go" held_by sockbrokerd "$broker"
port80
echo "restart: PASS"
EOF
