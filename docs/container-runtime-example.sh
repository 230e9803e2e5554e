#!/usr/bin/env bash
# A container runtime hands a container port 80 bound inside the container's
# own network namespace: no capability in the container, no userspace proxy,
# clients seen with their real addresses.
#
#   1. makes a "container" network namespace with `ip netns add`;
#   2. starts sockbrokerd with a policy whose socket "web" says
#      netns = "request", may be bound only in namespaces mounted at
#      /run/netns/sockbroker-example-* (netns_path), and is granted to the
#      runtime's own uid only;
#   3. plays the runtime: as that uid, inside the namespace (ip netns exec),
#      `sockbroker get --netns /run/netns/NAME web -- sockbroker-demo-httpd`
#      sends the namespace with the request, receives port 80 bound in it as
#      fd 3, and execs the server there;
#   4. curls the server from inside the namespace, and shows that the
#      broker's own namespace has nothing on port 80 and is refused when the
#      runtime sends it;
#   5. prints the broker's audit events (the grant names the namespace).
#
# Usage: sudo docs/container-runtime-example.sh    (after scripts/build.sh)
# Environment: SOCKBROKER_BUILD (default: build/), RUNTIME_UID (default 64900:
# a uid with no account, standing for containerd's or podman's identity).
# The broker runs in a private network namespace of its own (unshare --net);
# the only trace left on the host while it runs is /run/netns/NAME.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly root
readonly build=${SOCKBROKER_BUILD:-$root/build}
readonly runtime_uid=${RUNTIME_UID:-64900}
readonly inner_flag=--inside-private-netns

step() { printf '\n==> %s\n' "$*"; }
die() {
  printf 'container-runtime-example.sh: %s\n' "$*" >&2
  exit 1
}

if [[ "${1:-}" != "$inner_flag" ]]; then
  ((EUID == 0)) || die "needs root (network namespaces, port 80, uid switching): sudo $0"
  [[ -x "$build/broker/sockbrokerd" ]] || die "no $build/broker/sockbrokerd: build first (scripts/build.sh)"
  command -v ip >/dev/null || die "ip(8) not found (package iproute2)"
  exec unshare --net -- bash "${BASH_SOURCE[0]}" "$inner_flag"
fi

ip link set lo up
tmp=$(mktemp -d /tmp/sockbroker-netns.XXXXXX)
chmod 0755 "$tmp" # the runtime uid reaches the control socket and the binaries here
ns=sockbroker-example-$$
broker_pid=""

cleanup() {
  if [[ -n "$broker_pid" ]] && kill -0 "$broker_pid" 2>/dev/null; then
    kill -TERM "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  fi
  ip netns delete "$ns" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

install -d -m 0755 "$tmp/bin"
install -m 0755 "$build/broker/sockbrokerd" "$build/client/sockbroker" \
  "$build/client/sockbroker-demo-httpd" "$tmp/bin/"
sockbroker="$tmp/bin/sockbroker"
control="$tmp/control.sock"
as_runtime() { setpriv --reuid="$runtime_uid" --regid="$runtime_uid" --clear-groups "$@"; }

step "The container's network namespace: ip netns add $ns"
ip netns add "$ns"
ip -n "$ns" link set lo up
echo "    /run/netns/$ns is $(stat -L -c 'net:[%i]' "/run/netns/$ns"); the broker's is $(readlink /proc/self/ns/net)"

step "The policy: \"web\" is bound in the namespace each request sends, for uid $runtime_uid only"
cat >"$tmp/policy.toml" <<EOF
[socket.web]
listen = "0.0.0.0:80"
netns = "request"       # bound at grant time, inside the requester's namespace
netns_path = "/run/netns/sockbroker-example-*"   # and only one of these

[[socket.web.allow]]
user = $runtime_uid     # the container runtime's identity
EOF
sed 's/^/    /' "$tmp/policy.toml"

step "Starting sockbrokerd (root); it binds nothing yet"
"$tmp/bin/sockbrokerd" --policy "$tmp/policy.toml" --control "$control" --audit "$tmp/audit.log" \
  2>"$tmp/broker.log" &
broker_pid=$!
for ((i = 0; i < 50; i++)); do
  "$sockbroker" --control "$control" list >/dev/null 2>&1 && break
  kill -0 "$broker_pid" 2>/dev/null || break
  sleep 0.1
done
"$sockbroker" --control "$control" list >/dev/null 2>&1 || { cat "$tmp/broker.log" >&2; die "sockbrokerd did not start"; }
sed 's/^/    /' "$tmp/broker.log"

step "The runtime (uid $runtime_uid) starts the server in the container:"
echo "    ip netns exec $ns sockbroker get --netns /run/netns/$ns web -- sockbroker-demo-httpd --count 1"
ip netns exec "$ns" setpriv --reuid="$runtime_uid" --regid="$runtime_uid" --clear-groups \
  "$sockbroker" --control "$control" get --netns "/run/netns/$ns" web -- \
  "$tmp/bin/sockbroker-demo-httpd" --count 1 2>"$tmp/service.log" &
service_pid=$!

step "curl http://127.0.0.1/ from inside the container's namespace"
ok=0
for ((i = 0; i < 50; i++)); do
  if ip netns exec "$ns" curl -sS --max-time 5 http://127.0.0.1:80/ 2>/dev/null; then
    ok=1
    break
  fi
  sleep 0.1
done
((ok)) || { sed 's/^/    /' "$tmp/service.log" >&2; die "no answer on port 80 inside $ns"; }
wait "$service_pid" || die "the server exited with status $?"
sed 's/^/    /' "$tmp/service.log"

step "Port 80 in the broker's own namespace: nothing (it was bound in $ns only)"
if curl -sS --max-time 2 http://127.0.0.1:80/ >/dev/null 2>&1; then die "something answers on port 80 outside $ns"; fi
echo "    connection refused, as it should be"

step "The broker's own namespace is refused, even to the runtime"
status=0
as_runtime "$sockbroker" --control "$control" get --netns /proc/self/ns/net web -- true || status=$?
echo "exit code: $status"
((status == 77)) || die "expected exit code 77 (permission denied)"

step "A uid the policy does not name is refused, namespace or not"
status=0
setpriv --reuid=65534 --regid=65534 --clear-groups "$sockbroker" --control "$control" \
  get --netns "/run/netns/$ns" web -- true || status=$?
echo "exit code: $status"
((status == 77)) || die "expected exit code 77 (permission denied)"

kill -TERM "$broker_pid"
wait "$broker_pid" || true
broker_pid=""
step "The audit trail: the grant names the namespace (\"netns\") and the runtime (\"peer\")"
cat "$tmp/audit.log"
