#!/usr/bin/env bash
# sockbrokerd under socket activation, the way systemd starts it from
# sockbroker.socket, with systemd-socket-activate(1) standing in for PID 1:
#   - the broker serves the inherited descriptor (LISTEN_FDS, named "control")
#     and creates no path of its own: not its --control path, not the default;
#   - a uid 65534 client acquires a socket through it and serves a request;
#   - SIGTERM stops it with status 0 and it leaves systemd's path in place.
# Runs in a private network namespace.
#
# Usage: socket_activation.sh SOCKBROKERD SOCKBROKER DEMO_HTTPD
# Needs root: exits 77 (skip) without it, or fails when SOCKBROKER_TEST_REQUIRE_ROOT=1.
set -euo pipefail

fail() { echo "socket activation: FAIL: $*" >&2; [ -f "${work:-/nonexistent}/broker.log" ] && cat "$work/broker.log" >&2; exit 1; }
step() { echo "==> $*"; }

[ $# -eq 3 ] || { echo "usage: $0 SOCKBROKERD SOCKBROKER DEMO_HTTPD" >&2; exit 64; }
sockbrokerd=$1 sockbroker=$2 httpd=$3

# shellcheck source=../skip_or_fail.sh
source "$(dirname "${BASH_SOURCE[0]}")/../skip_or_fail.sh"
sbtest_require_root "socket activation" "network namespace, port 80, uid 65534 clients"
command -v systemd-socket-activate >/dev/null || fail "systemd-socket-activate is not installed (Debian package systemd)"
if [ -z "${SOCKBROKER_ACTIVATION_TEST_NETNS:-}" ]; then
  exec unshare --net env SOCKBROKER_ACTIVATION_TEST_NETNS=1 bash "$0" "$@"
fi
ip link set lo up || fail "cannot bring lo up in the private network namespace"

# uid 65534 must reach the binaries' copies and the control socket.
work=$(mktemp -d /tmp/sockbroker-activation-test.XXXXXX)
chmod 0755 "$work"
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
# A build under /root is out of uid 65534's reach: run copies.
install -m 0755 "$sockbroker" "$httpd" "$work/"
sockbroker="$work/$(basename "$sockbroker")" httpd="$work/$(basename "$httpd")"

mkdir -m 0755 "$work/run"
cat >"$work/policy.toml" <<'TOML'
[socket.web]
listen = "127.0.0.1:80"

[[socket.web.allow]]
user = 65534
TOML
control="$work/run/control.sock"   # systemd's (here systemd-socket-activate's) path
ignored="$work/run/ignored.sock"   # the --control the broker must ignore
default=/run/sockbroker/control.sock
default_existed=0
[ ! -e "$default" ] || default_existed=1

step "systemd-socket-activate --seqpacket --fdname=control -l $control sockbrokerd ..."
systemd-socket-activate --seqpacket --fdname=control -l "$control" \
  "$sockbrokerd" --policy "$work/policy.toml" --control "$ignored" --audit "$work/audit.log" 2>"$work/broker.log" &
pid=$!
for _ in $(seq 100); do [ -S "$control" ] && break; sleep 0.1; done
[ -S "$control" ] || fail "systemd-socket-activate did not create $control"
# systemd-socket-activate makes the file 0644 whatever the umask, and connect(2)
# needs write permission: set what sockbroker.socket's SocketMode=0666 sets.
chmod 0666 "$control" || fail "chmod $control"

step "as uid 65534: sockbroker list --json (the first connection starts the broker)"
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
listing=$(as_nobody "$sockbroker" --control "$control" list --json) || fail "sockbroker list through the activated broker failed"
echo "$listing"
grep -q '"web"' <<<"$listing" || fail "the listing does not show socket \"web\""
[ "$(readlink "/proc/$pid/exe")" = "$(readlink -f "$sockbrokerd")" ] || fail "pid $pid is not sockbrokerd (systemd-socket-activate execs it in place)"

step "as uid 65534: sockbroker run -s web -- sockbroker-demo-httpd --count 1, then one request"
as_nobody "$sockbroker" --control "$control" run -s web -- "$httpd" --count 1 >"$work/httpd.log" 2>&1 &
httpd_pid=$!
page=$(curl -sS --max-time 10 http://127.0.0.1:80/) || fail "no answer on 127.0.0.1:80 from the service holding the broker's socket"
wait "$httpd_pid" || { cat "$work/httpd.log" >&2; fail "the service exited with failure"; }
grep -q "socket: web" <<<"$page" || fail "unexpected page: $page"
echo "$page" | head -2

step "the broker used the inherited socket and created no path"
grep -q "ready on the socket systemd passed" "$work/broker.log" || fail "the broker did not say it serves the socket systemd passed"
[ ! -e "$ignored" ] || fail "the broker created its --control path $ignored although systemd passed a socket"
[ "$default_existed" = 1 ] || [ ! -e "$default" ] || fail "the broker created $default although systemd passed a socket"

step "SIGTERM"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
[ "$status" -eq 0 ] || fail "sockbrokerd exited with $status after SIGTERM"
[ -S "$control" ] || fail "the broker removed $control, which belongs to systemd"
grep -q '"event":"grant".*"uid":65534' "$work/audit.log" || fail "no grant to uid 65534 in the audit log"
grep -q '"event":"stop"' "$work/audit.log" || fail "no stop event in the audit log"
echo "socket activation: PASS"
