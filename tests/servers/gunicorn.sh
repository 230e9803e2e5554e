#!/usr/bin/env bash
# gunicorn 20.1 (Debian 12) serving tests/servers/app.py with 2 sync workers:
#   bind        `--bind 0.0.0.0:80` under `sockbroker run --` (gunicorn sets
#               SO_REUSEADDR, binds, listens); `--bind 0.0.0.0:81` (not in the
#               policy) fails, gunicorn logging "[Errno 13] Permission denied".
#               gunicorn's sd_notify READY=1 reaches $NOTIFY_SOCKET through the
#               supervisor (the recipe's unit is Type=notify, NotifyAccess=all).
#   activation  socket activation: gunicorn takes LISTEN_FDS sockets (fds 3, ...)
#               instead of binding, but only when LISTEN_PID is its own pid (so
#               the supervisor must set it to PROGRAM's pid, not its own), and then
#               calls setsockopt(SO_REUSEADDR) and listen() on them.
#
# Usage: gunicorn.sh SOCKBROKERD SOCKBROKER CASE
source "$(dirname "$0")/lib.sh"
servers_init gunicorn "$@"
require_program /usr/bin/gunicorn gunicorn

install -m 0644 "$servers_dir/app.py" "$srv/app.py"
printf '[socket.web]\nlisten = "0.0.0.0:80"\n\n[[socket.web.allow]]\nuser = 65534\n' | write_policy
gunicorn=(/usr/bin/gunicorn --chdir "$srv" --workers 2)
# A worker still booting when SIGTERM comes can miss its master's TERM and
# hold the master for gunicorn's graceful timeout (30 s): each case stops the
# server once both workers run.
workers_booted() { [ "$(grep -c "Booting worker" "$server_log")" -ge "$1" ]; }

case "$case_name" in
bind)
  start_broker
  step "--bind 0.0.0.0:81, outside the policy, must fail (gunicorn retries for 5 s first)"
  run_expect_failure extra 15 -- "${gunicorn[@]}" --log-level debug --bind 0.0.0.0:81 app:application
  expect_log "$work/logs/extra.log" "connection to ('0.0.0.0', 81) failed: [Errno 13] Permission denied" \
    "the bind outside the policy must fail with EACCES inside gunicorn"
  expect_run_status 1
  step "--bind 0.0.0.0:80, with NOTIFY_SOCKET as systemd sets it for Type=notify"
  # The recipe's unit is Type=notify with NotifyAccess=all: gunicorn's
  # READY=1 must get out from under the supervisor and the lockdown.
  /usr/bin/python3 "$servers_dir/notify_receiver.py" "$work/run/notify.sock" "$work/notify.log" 20 &
  track_helper $!
  wait_until 5 "the notification socket" test -S "$work/run/notify.sock"
  NOTIFY_SOCKET=$work/run/notify.sock serve -- "${gunicorn[@]}" --bind 0.0.0.0:80 app:application
  wait_http http://127.0.0.1:80/ "hello from gunicorn"
  wait_until 10 "READY=1 from gunicorn on NOTIFY_SOCKET" grep -q "READY=1" "$work/notify.log"
  echo "NOTIFY_SOCKET: $(head -1 "$work/notify.log")"
  expect_audit grant 0.0.0.0 80
  supervised_only "audit deny of 0.0.0.0:81" && expect_audit deny 0.0.0.0 81
  wait_until 10 "both workers booted" workers_booted 2
  stop_server TERM
  supervised_only "the supervisor's exit status" && { [ "$server_status" -eq 0 ] || fail "sockbroker run exited $server_status after SIGTERM (gunicorn exits 0)"; }
  ;;
activation)
  activation=1
  start_broker
  step "LISTEN_FDS=1: the socket as fd 3, no --bind"
  serve_activated web -- "${gunicorn[@]}" app:application
  wait_http http://127.0.0.1:80/ "hello from gunicorn"
  expect_log "$server_log" "Listening at: http://0.0.0.0:80" "gunicorn must say it serves the inherited socket"
  expect_audit grant 0.0.0.0 80
  wait_until 10 "both workers booted" workers_booted 2
  stop_server TERM
  ;;
*)
  echo "gunicorn.sh: unknown case \"$case_name\" (bind, activation)" >&2
  exit 64
  ;;
esac
pass
