#!/usr/bin/env bash
# nginx 1.22 (Debian 12) under `sockbroker run --`: nginx binds its own
# sockets and supervised bind answers each bind(2) with the broker's socket.
#
# Cases (the third argument):
#   ipv4       `listen 80;`, `daemon off;`. One request; a configuration with
#              `listen 81;` (not in the policy) fails to start with
#              "bind() to 0.0.0.0:81 failed (13: Permission denied)"; SIGTERM to
#              the supervisor stops nginx and the supervisor exits 0.
#   ipv6       `listen [::]:80;`: nginx sets IPV6_V6ONLY on by default, so the
#              policy says `listen = "[::]:80"` with the default v6only = true;
#              [::1] answers, 127.0.0.1 is refused; `listen [::]:80 ipv6only=off;`
#              against that policy is refused (13: Permission denied).
#   dualstack  `listen [::]:80 ipv6only=off;` with `v6only = false`: [::1] and
#              127.0.0.1 both answer; plain `listen [::]:80;` against that policy
#              is refused.
#   daemon     nginx's default daemonizing mode: the process sockbroker runs
#              exits at once, the supervisor stays while the daemon (master and
#              workers) lives, and exits 0 once the daemon quits.
#   reload     SIGHUP to the supervisor, forwarded to nginx, with a new
#              configuration (new page, one more `listen 8080;` granted by the
#              policy) while a client connects every 5 ms: none refused, none hung.
#   upgrade    binary upgrade (SIGUSR2 to the master, then SIGQUIT to the old
#              master) under the supervisor, the same client running: none
#              refused, none hung; the supervisor stays while the new master lives.
#
# Usage: nginx.sh SOCKBROKERD SOCKBROKER CASE
source "$(dirname "$0")/lib.sh"
servers_init nginx "$@"
require_program /usr/sbin/nginx nginx
nginx=/usr/sbin/nginx

# nginx_conf FILE PAGE DAEMON LISTEN...: a complete configuration whose every
# path is under $srv (uid 65534 writes there); each LISTEN is one `listen`
# directive's parameters, and every server answers PAGE.
nginx_conf() {
  local file=$1 page=$2 daemon=$3
  shift 3
  local name
  name=$(basename "$file" .conf)
  {
    echo "# tests/servers/nginx.sh: $case_name"
    echo "daemon $daemon;"
    # As root (the harness check) nginx's workers would run as nobody:nobody,
    # and Debian has no group nobody. As uid 65534 nginx ignores `user`.
    $harness && echo "user nobody nogroup;"
    echo "worker_processes 2;"
    echo "pid $srv/$name.pid;"
    echo "error_log $srv/$name-error.log info;"
    echo "events { worker_connections 128; }"
    echo "http {"
    echo "  access_log off;"
    for temp in client_body proxy fastcgi uwsgi scgi; do echo "  ${temp}_temp_path $srv/$temp;"; done
    echo "  server {"
    local listen
    for listen in "$@"; do echo "    listen $listen;"; done
    echo "    location / { default_type text/plain; return 200 \"$page\\n\"; }"
    echo "  }"
    echo "}"
  } >"$file"
  chmod 0644 "$file"
}

# nginx_args NAME: the command line for $srv/NAME.conf (-e: the error log from
# the first line on, before the configuration is read).
nginx_args() { echo "$nginx -p $srv -c $srv/$1.conf -e $srv/$1-error.log"; }

# refused_to_start NAME DIRECTIVE...: nginx with those listen directives must
# fail, saying bind() failed with EACCES, in its error log.
refused_to_start() {
  local name=$1 expect=$2
  shift 2
  nginx_conf "$srv/$name.conf" "must not serve" off "$@"
  # shellcheck disable=SC2046
  run_expect_failure "$name" 10 -- $(nginx_args "$name")
  expect_log "$srv/$name-error.log" "$expect" "the bind outside the policy must fail with EACCES inside nginx"
  expect_run_status 1
}

grant_to_nobody() {  # NAME LISTEN [EXTRA TOML LINE]
  printf '[socket.%s]\nlisten = "%s"\n%s\n[[socket.%s.allow]]\nuser = 65534\n\n' "$1" "$2" "${3:-}" "$1"
}

# The client loop during reload and upgrade: every 5 ms a new connection,
# answered at least once before the operation starts.
start_loop() {
  loop_stop=$work/loop.stop loop_summary=$work/loop.json
  /usr/bin/python3 "$servers_dir/http_loop.py" 127.0.0.1 80 "$loop_stop" "$loop_summary" 0.005 30 &
  loop_pid=$!
  track_helper "$loop_pid"
  wait_until 30 "the client loop's first answer" test -e "$loop_summary.first"
}
stop_loop() {
  touch "$loop_stop"
  wait "$loop_pid" || fail "the client loop failed"
  echo "client loop: $(cat "$loop_summary")"
  /usr/bin/python3 - "$loop_summary" "$@" <<'PY' || fail "connections were refused, reset or hung during the operation"
import json, sys
summary = json.load(open(sys.argv[1]))
bad = {k: summary[k] for k in ("refused", "reset", "hung", "other") if summary[k]}
if bad:
    print(f"failures: {bad}; first: {summary['errors']}", file=sys.stderr)
    sys.exit(1)
if summary["ok"] < 50:
    print(f"only {summary['ok']} requests answered: the loop did not cover the operation", file=sys.stderr)
    sys.exit(1)
for page in sys.argv[2:]:
    if not summary["bodies"].get(page):
        print(f"no answer was {page!r} during the operation: {summary['bodies']}", file=sys.stderr)
        sys.exit(1)
PY
}

pidfile_pid() { [ -s "$1" ] && tr -d ' \n' <"$1"; }
has_pidfile() { [ -s "$1" ]; }
# In the harness check, the nginx started in the foreground exits once it has
# daemonized: wait for that, and stop watching it.
daemonized() {
  if $harness; then
    wait "$server_pid" || fail "nginx failed to daemonize"
    server_pid=
  fi
}
not_alive() { ! kill -0 "$1" 2>/dev/null; }

case "$case_name" in
ipv4)
  grant_to_nobody web 0.0.0.0:80 | write_policy
  start_broker
  step "a configuration with listen 81, outside the policy, must not start"
  refused_to_start extra "bind() to 0.0.0.0:81 failed (13: Permission denied)" 81
  step "listen 80; daemon off"
  nginx_conf "$srv/nginx.conf" "hello from nginx" off 80
  # shellcheck disable=SC2046
  serve -- $(nginx_args nginx)
  wait_http http://127.0.0.1:80/ "hello from nginx"
  expect_audit grant 0.0.0.0 80
  supervised_only "audit deny of 0.0.0.0:81" && expect_audit deny 0.0.0.0 81
  step "SIGTERM to the supervisor reaches nginx; the supervisor exits with nginx's status"
  stop_server TERM
  supervised_only "the supervisor's exit status" && { [ "$server_status" -eq 0 ] || fail "sockbroker run exited $server_status after SIGTERM (nginx exits 0)"; }
  [ -z "$(netns_servers)" ] || fail "processes left after the supervisor exited: $(netns_servers)"
  ;;
ipv6)
  grant_to_nobody web6 '[::]:80' | write_policy
  start_broker
  step "listen [::]:80 ipv6only=off against a v6only policy socket must not start"
  refused_to_start extra "bind() to [::]:80 failed (13: Permission denied)" "[::]:80 ipv6only=off"
  step "listen [::]:80 (nginx's default ipv6only=on)"
  nginx_conf "$srv/nginx.conf" "hello from nginx over IPv6" off "[::]:80"
  # shellcheck disable=SC2046
  serve -- $(nginx_args nginx)
  wait_http "http://[::1]:80/" "hello from nginx over IPv6"
  expect_refused http://127.0.0.1:80/
  expect_audit grant :: 80
  supervised_only "audit deny of [::]:80 ipv6only=off" && expect_audit deny :: 80
  ;;
dualstack)
  grant_to_nobody web '[::]:80' 'v6only = false' | write_policy
  start_broker
  step "listen [::]:80 (IPV6_V6ONLY on) against a v6only = false policy socket must not start"
  refused_to_start extra "bind() to [::]:80 failed (13: Permission denied)" "[::]:80"
  step "listen [::]:80 ipv6only=off"
  nginx_conf "$srv/nginx.conf" "hello from nginx, dual stack" off "[::]:80 ipv6only=off"
  # shellcheck disable=SC2046
  serve -- $(nginx_args nginx)
  wait_http "http://[::1]:80/" "hello from nginx, dual stack"
  wait_http http://127.0.0.1:80/ "hello from nginx, dual stack"
  expect_audit grant :: 80
  ;;
daemon)
  grant_to_nobody web 0.0.0.0:80 | write_policy
  start_broker
  step "listen 80; nginx's default daemon on"
  nginx_conf "$srv/nginx.conf" "hello from the nginx daemon" on 80
  # shellcheck disable=SC2046
  serve -- $(nginx_args nginx)
  wait_until 10 "nginx's pid file" has_pidfile "$srv/nginx.pid"
  daemonized
  master=$(pidfile_pid "$srv/nginx.pid")
  wait_http http://127.0.0.1:80/ "hello from the nginx daemon"
  expect_audit grant 0.0.0.0 80
  if supervised_only "the supervisor staying while the daemon lives"; then
    [ "$master" != "$server_pid" ] || fail "the nginx master is the supervisor's pid"
    sleep 0.5
    server_alive || fail "the supervisor exited although the nginx daemon (pid $master) lives"
    step "SIGQUIT to the daemon's master (pid $master): the supervisor follows"
    kill -QUIT "$master"
    wait_until 10 "the nginx master to exit" not_alive "$master"
    for _ in $(seq 200); do server_alive || break; sleep 0.05; done
    server_alive && fail "the supervisor still runs 10 s after the whole nginx tree exited"
    server_status=0
    wait "$server_pid" || server_status=$?
    server_pid=
    [ "$server_status" -eq 0 ] || fail "sockbroker run exited $server_status (the program it ran exited 0)"
    [ -z "$(netns_servers)" ] || fail "processes left after the supervisor exited: $(netns_servers)"
  else
    kill -QUIT "$master"
  fi
  ;;
reload)
  { grant_to_nobody web 0.0.0.0:80; grant_to_nobody alt 0.0.0.0:8080; } | write_policy
  start_broker
  step "listen 80, daemon off, page v1"
  nginx_conf "$srv/nginx.conf" "page v1" off 80
  # shellcheck disable=SC2046
  serve -- $(nginx_args nginx)
  wait_http http://127.0.0.1:80/ "page v1"
  start_loop
  sleep 0.5
  step "new configuration (page v2, one more listen 8080), SIGHUP to the supervisor"
  nginx_conf "$srv/nginx.conf" "page v2" off 80 8080
  kill -HUP "$server_pid"
  wait_http http://127.0.0.1:80/ "page v2"
  wait_http http://127.0.0.1:8080/ "page v2"
  sleep 0.5
  stop_loop "page v1" "page v2"
  expect_audit grant 0.0.0.0 8080
  stop_server TERM
  ;;
upgrade)
  grant_to_nobody web 0.0.0.0:80 | write_policy
  start_broker
  step "listen 80, daemon on (nginx ignores SIGUSR2 in a master whose parent has not changed, i.e. with daemon off), page v1"
  nginx_conf "$srv/nginx.conf" "page v1" on 80
  # shellcheck disable=SC2046
  serve -- $(nginx_args nginx)
  wait_until 10 "nginx's pid file" has_pidfile "$srv/nginx.pid"
  daemonized
  old=$(pidfile_pid "$srv/nginx.pid")
  wait_http http://127.0.0.1:80/ "page v1"
  start_loop
  sleep 0.5
  step "page v2 for the new binary; SIGUSR2 to the master (pid $old)"
  nginx_conf "$srv/nginx.conf" "page v2" on 80
  kill -USR2 "$old"
  new_master() { [ -s "$srv/nginx.pid.oldbin" ] && new=$(pidfile_pid "$srv/nginx.pid") && [ "$new" != "$old" ]; }
  wait_until 10 "the new master's pid file (and nginx.pid.oldbin)" new_master
  echo "new master: pid $new"
  wait_until 10 "the new workers answering" http_has http://127.0.0.1:80/ "page v2"
  sleep 0.3
  step "SIGQUIT to the old master (pid $old)"
  kill -QUIT "$old"
  wait_until 10 "the old master to exit" not_alive "$old"
  sleep 0.5
  stop_loop "page v1" "page v2"
  wait_http http://127.0.0.1:80/ "page v2"
  if supervised_only "the supervisor staying after the upgrade"; then
    server_alive || fail "the supervisor exited although the new nginx master (pid $new) lives"
    kill -QUIT "$new"
    for _ in $(seq 200); do server_alive || break; sleep 0.05; done
    server_alive && fail "the supervisor still runs 10 s after the new master quit"
    wait "$server_pid" || true
    server_pid=
  else
    kill -QUIT "$new"
  fi
  ;;
*)
  echo "nginx.sh: unknown case \"$case_name\" (ipv4, ipv6, dualstack, daemon, reload, upgrade)" >&2
  exit 64
  ;;
esac
pass
