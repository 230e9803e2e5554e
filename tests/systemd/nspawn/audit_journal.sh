#!/usr/bin/env bash
# Audit events in a real journal: the shipped unit runs the broker with
# --audit journal; a grant and a deny, asked for from two units of their own
# (systemd-run), come out as structured entries: SOCKBROKER_* fields (the
# event's JSON flattened, see broker/audit.cpp), SYSLOG_IDENTIFIER=sockbrokerd,
# PRIORITY notice for a deny and info otherwise, MESSAGE the JSON line, the
# caller's unit as the broker saw it, and journald's own _SYSTEMD_UNIT.
#
# Usage: audit_journal.sh ROOT STAGE (see lib.sh)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
nspawn_setup "$@"

nspawn_file /etc/sockbroker/policy.toml <<'EOF'
[socket.web]
listen = "127.0.0.1:80"

[[socket.web.allow]]
user = "nobody"

# No rule: granted to nobody but root.
[socket.admin]
listen = "127.0.0.1:8443"
EOF

nspawn_boot --wants sockbroker.service <<'EOF'
step "a grant and a deny, each from a unit of its own"
systemd-run --wait --quiet --unit=audit-grant --uid=nobody --gid=nogroup \
  /usr/local/bin/sockbroker run -s web -- true || fail "the grant was refused"
expect_status 77 systemd-run --wait --quiet --unit=audit-deny --uid=nobody --gid=nogroup \
  /usr/local/bin/sockbroker run -s admin -- true

step "journalctl -t sockbrokerd SOCKBROKER_EVENT=... -o json"
# The README's own query. journald may file an entry a moment after it came.
wait_for 5 "the grant in the journal" sh -c 'journalctl -t sockbrokerd SOCKBROKER_EVENT=grant -o json | grep -q .'
wait_for 5 "the deny in the journal" sh -c 'journalctl -t sockbrokerd SOCKBROKER_EVENT=deny -o json | grep -q .'
journalctl -t sockbrokerd -o json >/tmp/audit.json
broker=$(unit_property sockbroker.service MainPID)
/usr/bin/python3 - "$broker" <<'PY'
import json
import sys

broker_pid = sys.argv[1]
entries = [json.loads(line) for line in open("/tmp/audit.json")]
events = [e for e in entries if "SOCKBROKER_EVENT" in e]
print(f"{len(entries)} entries from sockbrokerd, {len(events)} of them audit events: "
      + ", ".join(e["SOCKBROKER_EVENT"] for e in events))
failed = False


def check(entry, field, expected):
    global failed
    got = entry.get(field)
    if got != expected:
        print(f"FAIL: {entry.get('SOCKBROKER_EVENT')}: {field} is {got!r}, expected {expected!r}")
        failed = True


def the(event):
    found = [e for e in events if e["SOCKBROKER_EVENT"] == event]
    if len(found) != 1:
        sys.exit(f"FAIL: {len(found)} {event} events, expected 1")
    return found[0]


for event in ("grant", "deny"):
    entry = the(event)
    print(f"{event}: " + " ".join(f"{k}={v}" for k, v in sorted(entry.items()) if k.startswith("SOCKBROKER_")))
    line = json.loads(entry["MESSAGE"])
    check(line, "event", event)
    check(entry, "SYSLOG_IDENTIFIER", "sockbrokerd")
    check(entry, "_SYSTEMD_UNIT", "sockbroker.service")
    check(entry, "_PID", broker_pid)
    check(entry, "PRIORITY", "5" if event == "deny" else "6")
    check(entry, "SOCKBROKER_PEER_UID", "65534")
    check(entry, "SOCKBROKER_PEER_GID", "65534")
    check(entry, "SOCKBROKER_PEER_UNIT", f"audit-{event}.service")
    check(entry, "SOCKBROKER_TYPE", "stream")
    check(entry, "SOCKBROKER_LOCAL_ADDR_SA_FAMILY", "AF_INET")
    check(entry, "SOCKBROKER_LOCAL_ADDR_SIN_ADDR", "127.0.0.1")
    # Every field of the JSON line is in the entry, under its flattened name.
    check(entry, "SOCKBROKER_PEER_PID", str(line["peer"]["pid"]))
    check(entry, "SOCKBROKER_SOCKET", line["socket"])

grant, deny = the("grant"), the("deny")
check(grant, "SOCKBROKER_SOCKET", "web")
check(grant, "SOCKBROKER_LOCAL_ADDR_SIN_PORT", "80")
check(grant, "SOCKBROKER_RULE", "0")
check(deny, "SOCKBROKER_SOCKET", "admin")
check(deny, "SOCKBROKER_LOCAL_ADDR_SIN_PORT", "8443")
check(deny, "SOCKBROKER_REASON", "no_rule_matched")
if "permission denied" not in deny.get("SOCKBROKER_MESSAGE", ""):
    print(f"FAIL: deny: SOCKBROKER_MESSAGE is {deny.get('SOCKBROKER_MESSAGE')!r}")
    failed = True
if not any(e["SOCKBROKER_EVENT"] == "start" for e in events):
    print("FAIL: no start event")
    failed = True
sys.exit(1 if failed else 0)
PY
echo "audit in the journal: PASS"
EOF
