#!/usr/bin/env bash
# Node.js (Debian 12's nodejs 18, or the newer one a machine has) running
# tests/servers/httpd.js:
#   bind        `server.listen(80)` under `sockbroker run --`: Node binds [::]:80
#               without IPV6_V6ONLY (dual stack), so the policy says "[::]:80"
#               with v6only = false; 127.0.0.1 and [::1] both answer. Before it,
#               net.createServer().listen(81) (not in the policy) must fail
#               with EACCES (Node tries [::]:81, then 0.0.0.0:81).
#   activation  `server.listen({fd: 3})` with the socket from `sockbroker run -s
#               web`: Node calls listen(2) on it, which supervised mode allows on
#               a granted socket (without --allow-listen).
#
# Usage: node.sh SOCKBROKERD SOCKBROKER CASE
source "$(dirname "$0")/lib.sh"
servers_init node "$@"
require_program /usr/bin/node nodejs

install -m 0644 "$servers_dir/httpd.js" "$srv/httpd.js"
printf '[socket.web]\nlisten = "[::]:80"\nv6only = false\n\n[[socket.web.allow]]\nuser = 65534\n' | write_policy

case "$case_name" in
bind)
  start_broker
  step "node httpd.js --port 80, after trying 81"
  serve -- /usr/bin/node "$srv/httpd.js" --port 80 --forbidden 81
  wait_http "http://[::1]:80/" "hello from node"
  wait_http http://127.0.0.1:80/ "hello from node"
  if supervised_only "Node's own report of EACCES for 81"; then
    expect_log "$server_log" "forbidden 81: EACCES errno -13" "listen(81) outside the policy must fail with EACCES"
  fi
  expect_audit grant :: 80
  supervised_only "audit deny of 81" && expect_audit deny 0.0.0.0 81
  stop_server TERM
  ;;
activation)
  activation=1
  start_broker
  step "node httpd.js --fd 3"
  serve_activated web -- /usr/bin/node "$srv/httpd.js" --fd 3
  wait_http "http://[::1]:80/" "hello from node"
  wait_http http://127.0.0.1:80/ "hello from node"
  expect_audit grant :: 80
  stop_server TERM
  ;;
*)
  echo "node.sh: unknown case \"$case_name\" (bind, activation)" >&2
  exit 64
  ;;
esac
pass
