#!/usr/bin/env bash
# `unit = "..."` rules under a real systemd: socket "web" is allowed only to
# allowed.service. Two units run the same `sockbroker run -s web -- PROGRAM`
# as the same user (nobody): allowed.service's PROGRAM gets the listening
# socket as fd 3; denied.service's sockbroker exits 77, naming its unit.
#
# Usage: unit_rules.sh ROOT STAGE (see lib.sh)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
nspawn_setup "$@"

nspawn_file /etc/sockbroker/policy.toml <<'EOF'
[socket.web]
listen = "127.0.0.1:80"

[[socket.web.allow]]
unit = "allowed.service"
EOF
# What PROGRAM prints proves what it got: a listening socket at fd 3 with
# systemd's variables, as socket activation would give it.
nspawn_file /srv/show-fd3.py <<'EOF'
import os
import socket

listener = socket.socket(fileno=3)
host, port = listener.getsockname()
listening = listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
print(f"uid {os.getuid()}: LISTEN_FDS={os.environ['LISTEN_FDS']} LISTEN_FDNAMES={os.environ['LISTEN_FDNAMES']} "
      f"fd 3: {host}:{port} listening={listening}")
EOF
for unit in allowed denied; do
  nspawn_unit $unit.service <<'EOF'
[Unit]
Requires=sockbroker.socket
After=sockbroker.socket
[Service]
Type=oneshot
User=nobody
Group=nogroup
ExecStart=/usr/local/bin/sockbroker run -s web -- /usr/bin/python3 /srv/show-fd3.py
EOF
done

nspawn_boot --wants sockbroker.socket <<'EOF'
step "allowed.service: gets the socket as fd 3"
systemctl start allowed.service || { journalctl -u allowed.service --no-pager; fail "allowed.service failed"; }
wait_for 5 "allowed.service's program to show a listening 127.0.0.1:80 at fd 3" journal_has allowed.service \
  "^uid 65534: LISTEN_FDS=1 LISTEN_FDNAMES=web fd 3: 127\.0\.0\.1:80 listening=1$"
journalctl -u allowed.service --no-pager -o cat

step "denied.service: the same command as the same user, refused with 77"
if systemctl start denied.service; then fail "denied.service succeeded"; fi
[ "$(unit_property denied.service ExecMainStatus)" = 77 ] ||
  fail "denied.service's sockbroker exited with $(unit_property denied.service ExecMainStatus), not 77"
wait_for 5 "sockbroker's denial naming the unit the broker saw" journal_has denied.service \
  'socket "web": permission denied: .*unit "denied\.service"'
journalctl -u denied.service --no-pager -o cat
if journal_has denied.service "LISTEN_FDS"; then fail "denied.service's program ran"; fi
echo "unit rules: PASS"
EOF
