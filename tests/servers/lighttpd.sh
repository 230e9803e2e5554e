#!/usr/bin/env bash
# lighttpd 1.4.69 (Debian 12), in its two ways under sockbroker:
#   activation  socket activation: `sockbroker run -s web --` hands the broker's
#               socket as fd 3 (LISTEN_FDS) and the configuration says
#               server.systemd-socket-activation = "enable". lighttpd still calls
#               setsockopt(SO_REUSEADDR) on it, which the lockdown must let pass.
#   bind        lighttpd binds server.port = 80 itself under `sockbroker run --`;
#               a configuration with `server.port = 81` (not in the policy) fails
#               to start with "Permission denied".
#
# Usage: lighttpd.sh SOCKBROKERD SOCKBROKER CASE
source "$(dirname "$0")/lib.sh"
servers_init lighttpd "$@"
require_program /usr/sbin/lighttpd lighttpd

mkdir -m 0755 "$srv/www"
echo "hello from lighttpd" >"$srv/www/index.txt"
chmod 0644 "$srv/www/index.txt"

# lighttpd_conf FILE PORT [LINE]...: the configuration, with extra lines.
lighttpd_conf() {
  local file=$1 port=$2
  shift 2
  {
    echo "# tests/servers/lighttpd.sh: $case_name"
    echo "server.document-root = \"$srv/www\""
    echo "server.port = $port"
    echo "index-file.names = (\"index.txt\")"
    echo "mimetype.assign = (\".txt\" => \"text/plain\")"
    printf '%s\n' "$@"
  } >"$file"
  chmod 0644 "$file"
}

printf '[socket.web]\nlisten = "0.0.0.0:80"\n\n[[socket.web.allow]]\nuser = 65534\n' | write_policy

case "$case_name" in
activation)
  activation=1
  start_broker
  step "server.systemd-socket-activation = \"enable\", the socket as fd 3"
  lighttpd_conf "$srv/lighttpd.conf" 80 'server.systemd-socket-activation = "enable"'
  serve_activated web -- /usr/sbin/lighttpd -D -f "$srv/lighttpd.conf"
  wait_http http://127.0.0.1:80/ "hello from lighttpd"
  expect_audit grant 0.0.0.0 80
  stop_server TERM
  ;;
bind)
  start_broker
  step "server.port = 81, outside the policy, must not start"
  lighttpd_conf "$srv/extra.conf" 81
  run_expect_failure extra 10 -- /usr/sbin/lighttpd -D -f "$srv/extra.conf"
  grep -F "Permission denied" "$work/logs/extra.log" | grep -qF "0.0.0.0:81" ||
    fail "lighttpd did not report its bind of 0.0.0.0:81 failing with Permission denied (EACCES)"
  grep -F "Permission denied" "$work/logs/extra.log" | head -1
  expect_run_status 255
  step "server.port = 80, bound by lighttpd itself"
  lighttpd_conf "$srv/lighttpd.conf" 80
  serve -- /usr/sbin/lighttpd -D -f "$srv/lighttpd.conf"
  wait_http http://127.0.0.1:80/ "hello from lighttpd"
  expect_audit grant 0.0.0.0 80
  supervised_only "audit deny of 0.0.0.0:81" && expect_audit deny 0.0.0.0 81
  stop_server TERM
  ;;
*)
  echo "lighttpd.sh: unknown case \"$case_name\" (activation, bind)" >&2
  exit 64
  ;;
esac
pass
