#!/usr/bin/env bash
# An unmodified socket-activation server run the way systemd/examples/myapp.service
# runs one: the installed example unit as it is (User=www-data, no
# capabilities, its sandbox), with only its program replaced by the demo HTTP
# server, which takes its socket from LISTEN_FDS. Policy: "web" is port 80 of
# the container's (private) network, for www-data in myapp.service only.
# Starting myapp.service starts the broker through its socket; a request to
# port 80 is answered by the server, which itself could not bind; after
# myapp.service stops, the broker still holds port 80.
#
# Usage: myapp.sh ROOT STAGE (see lib.sh)
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

nspawn_boot --wants sockbroker.socket <<'EOF'
step "myapp.service: the installed example, serving sockbroker-demo-httpd"
cp /usr/local/share/doc/sockbroker/examples/myapp.service /etc/systemd/system/
grep -qx 'ExecStart=/usr/local/bin/sockbroker run -s web -- /usr/local/bin/myapp' /etc/systemd/system/myapp.service ||
  fail "the installed myapp.service does not run /usr/local/bin/myapp through sockbroker run -s web"
mkdir /etc/systemd/system/myapp.service.d
cat >/etc/systemd/system/myapp.service.d/demo.conf <<'UNIT'
[Service]
ExecStart=
ExecStart=/usr/local/bin/sockbroker run -s web -- /usr/local/bin/sockbroker-demo-httpd
UNIT
systemctl daemon-reload
unit_state_is sockbroker.service inactive/dead || fail "the broker started before anyone asked"
systemctl start myapp.service

step "curl http://127.0.0.1:80/"
wait_for 5 "an answer on port 80" curl -sS --max-time 1 http://127.0.0.1:80/
page=$(curl -sS --max-time 5 http://127.0.0.1:80/)
echo "$page"
grep -qx "socket: web (fd from LISTEN_FDS)" <<<"$page" || fail "the server did not serve the broker's socket \"web\""
grep -qx "uid: 33, gid: 33" <<<"$page" || fail "the server does not run as www-data"
grep -q "^bind(2) of port 8080 here: refused" <<<"$page" || fail "the server could bind a port of its own"
unit_state_is myapp.service active/running || fail "myapp.service is $(unit_state myapp.service)"
unit_state_is sockbroker.service active/running || fail "the broker is $(unit_state sockbroker.service)"
ss -Hltnp 'sport = :80'
ss -Hltnp 'sport = :80' | grep -q '"sockbroker-demo"' || fail "the server does not hold port 80"

step "myapp.service stopped: the broker still holds port 80"
systemctl stop myapp.service
holders=$(ss -Hltnp 'sport = :80')
echo "$holders"
grep -q '"sockbrokerd"' <<<"$holders" || fail "the broker does not hold port 80"
if grep -q '"sockbroker-demo"' <<<"$holders"; then fail "the server still runs"; fi
echo "myapp: PASS"
EOF
