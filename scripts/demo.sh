#!/usr/bin/env bash
# The sockbroker demo, end to end, on this machine and without touching its
# network: builds the project, then in a private network namespace
#
#   1. starts sockbrokerd (root) with policy/examples/demo.toml: it binds
#      0.0.0.0:80 and the other sockets of the policy;
#   2. starts a tiny HTTP server as uid 65534 ("nobody") through
#      `sockbroker run -s web`: it gets port 80 as fd 3 and is locked down
#      (it can no longer bind anything itself);
#   3. asks it for a page with curl;
#   4. shows a denial: "nobody" asks for "admin-api", which the policy
#      grants only to www-data (exit code 77);
#   5. stops the broker and prints its audit trail (JSON lines).
#
# Usage: sudo scripts/demo.sh
# Needs root (network namespace, port 80, uid switching). Exits non-zero if any
# step does not do what it should.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly root
readonly inner_flag=--inside-private-netns  # internal: set by the re-exec below
readonly nobody=65534                       # uid and gid of "nobody"/"nogroup" on Debian
readonly demo_unix_dir=/run/sockbroker-demo  # demo.toml's control-unix socket lives here

step() { printf '\n==> %s\n' "$*"; }
die() {
  printf 'demo.sh: %s\n' "$*" >&2
  exit 1
}

# ---------------------------------------------------------------------------
# Outside: build, then re-run this script in a new network namespace.
if [[ "${1:-}" != "$inner_flag" ]]; then
  ((EUID == 0)) || die "needs root (network namespace, port 80, uid switching): sudo $0"
  command -v unshare >/dev/null || die "unshare(1) not found (package util-linux)"

  step "Building (scripts/build.sh; the first build takes 5-10 minutes on 2 cores)"
  build_log=$(mktemp /tmp/sockbroker-build.XXXXXX.log)
  if ! "$root/scripts/build.sh" >"$build_log" 2>&1; then
    tail -n 40 "$build_log" >&2
    die "the build failed; full log in $build_log"
  fi
  grep -E '^deps.sh:' "$build_log" || true # say what was installed, if anything
  rm -f "$build_log"
  echo "built in $root/build"

  step "Entering a private network namespace (unshare --net): nothing here is visible outside"
  exec unshare --net -- bash "$root/scripts/demo.sh" "$inner_flag"
fi

# ---------------------------------------------------------------------------
# Inside the private network namespace.
cd "$root"
ip link set lo up # a new network namespace starts with lo down

tmp=$(mktemp -d /tmp/sockbroker-demo.XXXXXX)
# The broker refuses a control socket directory writable by others than root;
# 0755 lets uid 65534 reach the control socket inside it.
chmod 0755 "$tmp"
broker_pid=""
service_pid=""

cleanup() {
  local pid
  for pid in "$service_pid" "$broker_pid"; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$tmp"
  # demo.toml's Unix socket is on the host filesystem (a network namespace
  # does not hide paths); the broker creates it and leaves it at exit.
  rm -f "$demo_unix_dir/app.sock"
  rmdir "$demo_unix_dir" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

sockbrokerd="$root/build/broker/sockbrokerd"
sockbroker="$root/build/client/sockbroker"
httpd="$root/build/client/sockbroker-demo-httpd"
policy=policy/examples/demo.toml
control="$tmp/control.sock"
audit="$tmp/audit.log"

# uid 65534 must be able to execute the client binaries. A checkout under a
# 0700 directory (/root) is out of its reach: run copies from the temp dir.
as_nobody() { setpriv --reuid="$nobody" --regid="$nobody" --clear-groups "$@"; }
if ! as_nobody test -x "$sockbroker" || ! as_nobody test -x "$httpd"; then
  echo "(uid $nobody cannot reach $root/build: running copies from $tmp/bin)"
  mkdir -m 0755 "$tmp/bin"
  install -m 0755 "$sockbrokerd" "$sockbroker" "$httpd" "$tmp/bin/"
  sockbrokerd="$tmp/bin/sockbrokerd"
  sockbroker="$tmp/bin/sockbroker"
  httpd="$tmp/bin/sockbroker-demo-httpd"
fi

step "Checking the policy: sockbroker check --policy $policy"
"$sockbroker" check --policy "$policy"

step "Starting sockbrokerd (root): it binds every socket of the policy"
"$sockbrokerd" --policy "$policy" --control "$control" --audit "$audit" 2>"$tmp/broker.log" &
broker_pid=$!
for ((i = 0; i < 50; i++)); do
  [[ -S "$control" ]] && break
  kill -0 "$broker_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ ! -S "$control" ]]; then
  cat "$tmp/broker.log" >&2
  die "sockbrokerd did not create $control within 5 seconds"
fi
sed 's/^/    /' "$tmp/broker.log"
broker_log_shown=$(wc -l <"$tmp/broker.log")

step "sockbroker list (as root: every socket, its state and grant count)"
"$sockbroker" list --control "$control"

step "Starting the demo HTTP server as uid $nobody: sockbroker run -s web -- sockbroker-demo-httpd --count 1"
as_nobody "$sockbroker" run --control "$control" -s web -- "$httpd" --count 1 2>"$tmp/service.log" &
service_pid=$!

step "curl http://127.0.0.1:80/ (port 80 was bound by the broker; the server only accepts)"
if ! curl -sS --max-time 5 http://127.0.0.1:80/; then
  sed 's/^/    /' "$tmp/service.log" >&2
  die "no answer on port 80"
fi
service_status=0
wait "$service_pid" || service_status=$?
service_pid=""
sed 's/^/    /' "$tmp/service.log"
((service_status == 0)) || die "the demo server exited with status $service_status"

step "A denial: uid $nobody asks for \"admin-api\" (the policy grants it to www-data only)"
denied_status=0
as_nobody "$sockbroker" get --control "$control" admin-api -- true || denied_status=$?
echo "exit code: $denied_status"
((denied_status == 77)) || die "expected exit code 77 (permission denied), got $denied_status"

step "sockbroker status (as root: what the broker has done since it started)"
"$sockbroker" status --control "$control"

step "sockbroker audit (every listener in this namespace, from the kernel's sock_diag)"
audit_status=0
"$sockbroker" audit --control "$control" || audit_status=$?
((audit_status == 0)) || die "sockbroker audit found an unexpected listener (exit $audit_status)"

step "Stopping sockbrokerd (SIGTERM)"
kill -TERM "$broker_pid"
broker_status=0
wait "$broker_pid" || broker_status=$?
broker_pid=""
tail -n +"$((broker_log_shown + 1))" "$tmp/broker.log" | sed 's/^/    /'
((broker_status == 0)) || die "sockbrokerd exited with status $broker_status"
[[ ! -e "$control" ]] || die "sockbrokerd left its control socket behind"

step "The audit trail ($audit: one JSON object per line)"
cat "$audit"

step "Done: the service served port 80 without ever being able to bind it"
