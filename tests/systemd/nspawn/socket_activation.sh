#!/usr/bin/env bash
# Socket activation under a real systemd: with only sockbroker.socket enabled,
# systemd listens on /run/sockbroker/control.sock as the unit says, and the
# first client to connect starts sockbroker.service, which serves that socket
# (LISTEN_FDS) and creates none of its own. Then an unprivileged client gets a
# socket through it.
#
# Usage: socket_activation.sh ROOT STAGE (see lib.sh)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
nspawn_setup "$@"

nspawn_file /etc/sockbroker/policy.toml <<'EOF'
[socket.web]
listen = "127.0.0.1:80"

[[socket.web.allow]]
user = "nobody"
EOF

nspawn_boot --wants sockbroker.socket <<'EOF'
step "at boot: sockbroker.socket listening, sockbroker.service not started"
unit_state_is sockbroker.socket active/listening || fail "sockbroker.socket is $(unit_state sockbroker.socket)"
unit_state_is sockbroker.service inactive/dead || fail "sockbroker.service is $(unit_state sockbroker.service) before any client"
[ -S /run/sockbroker/control.sock ] || fail "no socket at /run/sockbroker/control.sock"
[ "$(stat -c '%a %U:%G' /run/sockbroker/control.sock)" = "666 root:root" ] ||
  fail "control.sock is $(stat -c '%a %U:%G' /run/sockbroker/control.sock), the unit says 0666 root:root"
[ "$(stat -c '%a' /run/sockbroker)" = 755 ] || fail "/run/sockbroker is $(stat -c '%a' /run/sockbroker), the unit says 0755"

step "as nobody: sockbroker list (the first connection starts the broker)"
listing=$(as_nobody sockbroker list --json) || fail "sockbroker list failed"
echo "$listing"
grep -q '"web"' <<<"$listing" || fail "the listing does not show socket \"web\""
unit_state_is sockbroker.service active/running || fail "sockbroker.service is $(unit_state sockbroker.service) after a client connected"
[ "$(unit_property sockbroker.service TriggeredBy)" = sockbroker.socket ] ||
  fail "sockbroker.service was not triggered by sockbroker.socket"
pid=$(unit_property sockbroker.service MainPID)
[ "$(readlink "/proc/$pid/exe")" = /usr/local/sbin/sockbrokerd ] || fail "MainPID $pid is not /usr/local/sbin/sockbrokerd"

step "the broker serves systemd's socket and made no path of its own"
wait_for 5 "the broker to say it serves the socket systemd passed" \
  journal_has sockbroker.service "ready on the socket systemd passed"
# One listening socket at that path, held by both PID 1 and the broker.
listening=$(ss -xlp | grep -F /run/sockbroker/control.sock) || { ss -xlp; fail "nothing listens on control.sock"; }
echo "$listening"
[ "$(wc -l <<<"$listening")" = 1 ] || fail "more than one socket listens at control.sock"
grep -q '"systemd",pid=1,' <<<"$listening" && grep -q '"sockbrokerd",pid='"$pid"',' <<<"$listening" ||
  fail "the socket at control.sock is not held by both systemd and the broker"
# Beside it only the file where audit lines the trail cannot take would wait
# for a next broker (audit_spill.hpp): root's alone, and empty.
[ "$(find /run/sockbroker -mindepth 1 ! -name control.sock.audit-unwritten | wc -l)" = 1 ] ||
  { ls -la /run/sockbroker; fail "/run/sockbroker holds more than control.sock and its audit file"; }
[ "$(stat -c '%F %U %a %s' /run/sockbroker/control.sock.audit-unwritten)" = "regular empty file root 600 0" ] ||
  { ls -la /run/sockbroker; fail "control.sock.audit-unwritten is not an empty file of root's alone"; }

step "as nobody: sockbroker run -s web -- true"
as_nobody sockbroker run -s web -- sh -c '[ "$LISTEN_FDS" = 1 ] && [ "$LISTEN_FDNAMES" = web ]' ||
  fail "sockbroker run -s web did not hand over the socket"
[ "$(unit_property sockbroker.service NRestarts)" = 0 ] || fail "the broker restarted"
echo "socket activation: PASS"
EOF
