#!/usr/bin/env bash
# `python3 -m http.server 80` (Debian 12's Python 3.11) under `sockbroker run --`.
# Python 3.11's http.server binds the first address getaddrinfo(None, port,
# AI_PASSIVE) returns, which on Debian 12 (glibc) is 0.0.0.0, not [::]: the
# policy grants 0.0.0.0:80 (it sets SO_REUSEADDR first). The same program on
# port 81 (not in the policy) must die with "[Errno 13] Permission denied" (exit
# 1), and SIGTERM, forwarded, kills Python: the supervisor exits 128+15.
#
# Usage: python_http.sh SOCKBROKERD SOCKBROKER
source "$(dirname "$0")/lib.sh"
servers_init python-http "$@"
require_program /usr/bin/python3 python3

mkdir -m 0755 "$srv/www"
echo "hello from python http.server" >"$srv/www/index.txt"
chmod 0644 "$srv/www/index.txt"
printf '[socket.web]\nlisten = "0.0.0.0:80"\n\n[[socket.web.allow]]\nuser = 65534\n' | write_policy
start_broker

step "python3 -m http.server 81, outside the policy, must fail with EACCES"
run_expect_failure extra 10 -- /usr/bin/python3 -m http.server 81 --directory "$srv/www"
expect_log "$work/logs/extra.log" "PermissionError: [Errno 13] Permission denied" "the bind outside the policy must fail with EACCES inside Python"
expect_run_status 1

step "python3 -m http.server 80"
serve -- /usr/bin/python3 -m http.server 80 --directory "$srv/www"
wait_http http://127.0.0.1:80/index.txt "hello from python http.server"
expect_audit grant 0.0.0.0 80
supervised_only "audit deny of 0.0.0.0:81" && expect_audit deny 0.0.0.0 81
step "SIGTERM to the supervisor: forwarded, and Python (no handler) dies of it"
stop_server TERM
if supervised_only "the supervisor's exit status after SIGTERM"; then
  [ "$server_status" -eq 143 ] || fail "sockbroker run exited $server_status; PROGRAM died of SIGTERM, so 128+15 = 143"
fi
pass
