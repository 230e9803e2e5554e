#!/usr/bin/env bash
# HAProxy 2.6 (Debian 12) under `sockbroker run --`: `bind :80` (0.0.0.0:80;
# haproxy also sets SO_REUSEADDR and SO_REUSEPORT, which the lockdown turns into
# no-ops). One request answered by haproxy itself; a configuration with one
# frontend on :81 (not in the policy) fails with "Permission denied".
#
# Usage: haproxy.sh SOCKBROKERD SOCKBROKER
source "$(dirname "$0")/lib.sh"
servers_init haproxy "$@"
require_program /usr/sbin/haproxy haproxy

# haproxy_conf FILE BIND...: one frontend per BIND, each answering itself.
haproxy_conf() {
  local file=$1 n=0
  shift
  {
    echo "# tests/servers/haproxy.sh"
    echo "global"
    echo "    log stderr format raw local0 info"
    echo "defaults"
    echo "    mode http"
    echo "    log global"
    echo "    timeout connect 1s"
    echo "    timeout client 5s"
    echo "    timeout server 5s"
    local bind
    for bind in "$@"; do
      n=$((n + 1))
      echo "frontend web$n"
      echo "    bind $bind"
      echo "    http-request return status 200 content-type text/plain lf-string \"hello from haproxy\\n\""
    done
  } >"$file"
  chmod 0644 "$file"
}

printf '[socket.web]\nlisten = "0.0.0.0:80"\n\n[[socket.web.allow]]\nuser = 65534\n' | write_policy
start_broker

step "a frontend on :81, outside the policy, must not start"
haproxy_conf "$srv/extra.cfg" :81
run_expect_failure extra 10 -- /usr/sbin/haproxy -db -f "$srv/extra.cfg"
grep -F "Permission denied" "$work/logs/extra.log" | grep -qF "[0.0.0.0:81]" ||
  fail "haproxy did not report its bind of 0.0.0.0:81 failing with Permission denied (EACCES)"
grep -F "Permission denied" "$work/logs/extra.log" | head -1
expect_run_status 1

step "bind :80"
haproxy_conf "$srv/haproxy.cfg" :80
serve -- /usr/sbin/haproxy -db -f "$srv/haproxy.cfg"
wait_http http://127.0.0.1:80/ "hello from haproxy"
expect_audit grant 0.0.0.0 80
supervised_only "audit deny of 0.0.0.0:81" && expect_audit deny 0.0.0.0 81
stop_server TERM
pass
