#!/usr/bin/env bash
# uWSGI 2.0.21 (Debian 12: uwsgi-core and uwsgi-plugin-python3) serving
# tests/servers/app.py with a master and 2 workers:
#   bind        `--http-socket :80` under `sockbroker run --` (uWSGI sets
#               SO_REUSEADDR and TCP_DEFER_ACCEPT before it binds: an option set
#               before the bind must not make supervised bind refuse it);
#               `--http-socket :81` (not in the policy) fails with
#               "bind(): Permission denied".
#   activation  the socket as fd 3 (`sockbroker run -s web`): uWSGI adopts
#               LISTEN_FDS sockets when LISTEN_PID is its pid; `--protocol http`
#               makes them HTTP sockets.
#
# Usage: uwsgi.sh SOCKBROKERD SOCKBROKER CASE
source "$(dirname "$0")/lib.sh"
servers_init uwsgi "$@"
require_program /usr/bin/uwsgi-core uwsgi-core
[ -e /usr/lib/uwsgi/plugins/python3_plugin.so ] ||
  skip_or_fail "uWSGI's python3 plugin is not installed (Debian package uwsgi-plugin-python3; scripts/deps.sh installs it)"

install -m 0644 "$servers_dir/app.py" "$srv/app.py"
printf '[socket.web]\nlisten = "0.0.0.0:80"\n\n[[socket.web.allow]]\nuser = 65534\n' | write_policy
uwsgi=(/usr/bin/uwsgi-core --plugin python3 --wsgi-file "$srv/app.py" --master --processes 2 --die-on-term --need-app)

case "$case_name" in
bind)
  start_broker
  step "--http-socket :81, outside the policy, must not start"
  run_expect_failure extra 10 -- "${uwsgi[@]}" --http-socket :81
  expect_log "$work/logs/extra.log" "bind(): Permission denied" "the bind outside the policy must fail with EACCES inside uWSGI"
  expect_run_status 1
  step "--http-socket :80"
  serve -- "${uwsgi[@]}" --http-socket :80
  wait_http http://127.0.0.1:80/ "hello from uWSGI"
  expect_audit grant 0.0.0.0 80
  supervised_only "audit deny of 0.0.0.0:81" && expect_audit deny 0.0.0.0 81
  stop_server TERM
  ;;
activation)
  activation=1
  start_broker
  step "the socket as fd 3, --protocol http"
  serve_activated web -- "${uwsgi[@]}" --protocol http
  wait_http http://127.0.0.1:80/ "hello from uWSGI"
  expect_log "$server_log" "SystemD socket activation detected" "uWSGI must adopt the socket passed as fd 3"
  expect_audit grant 0.0.0.0 80
  stop_server TERM
  ;;
*)
  echo "uwsgi.sh: unknown case \"$case_name\" (bind, activation)" >&2
  exit 64
  ;;
esac
pass
