#!/usr/bin/env bash
# dnsmasq 2.90 (Debian 12's dnsmasq-base: the program without its service)
# under `sockbroker run --`, as a DNS server answering one name itself. By
# default dnsmasq binds the wildcard for both families and both transports
# (UDP and TCP on 0.0.0.0:53, and on [::]:53 with IPV6_V6ONLY set), after an
# AF_NETLINK bind (interface list) that the lockdown allows: the policy has the
# four sockets. Queries over UDP and TCP, on 127.0.0.1 and [::1], are sent by
# tests/servers/dns_query.py. An instance on port 54 (not in the policy) fails
# with "Permission denied".
#
# Usage: dnsmasq.sh SOCKBROKERD SOCKBROKER
source "$(dirname "$0")/lib.sh"
servers_init dnsmasq "$@"
require_program /usr/sbin/dnsmasq dnsmasq-base

{
  for family in 4 6; do
    for transport in udp tcp; do
      address=0.0.0.0:53
      [ "$family" = 4 ] || address='[::]:53'
      type=stream
      [ "$transport" = tcp ] || type=datagram
      printf '[socket.dns%s-%s]\nlisten = "%s"\ntype = "%s"\n\n[[socket.dns%s-%s.allow]]\nuser = 65534\n\n' \
        "$family" "$transport" "$address" "$type" "$family" "$transport"
    done
  done
} | write_policy
start_broker

# shellcheck disable=SC2054  # the comma belongs to --host-record's value
# No configuration file, no upstream, no /etc/hosts, no pid file, logs on stderr.
dnsmasq=(/usr/sbin/dnsmasq --keep-in-foreground --log-facility=- --conf-file=/dev/null
  --no-resolv --no-hosts --pid-file= --host-record=web.test,192.0.2.7)

step "dnsmasq on port 54, outside the policy, must not start"
run_expect_failure extra 10 -- "${dnsmasq[@]}" --port=54
expect_log "$work/logs/extra.log" "failed to create listening socket for port 54: Permission denied" \
  "the bind outside the policy must fail with EACCES inside dnsmasq"
expect_run_status 2

step "dnsmasq on port 53"
serve -- "${dnsmasq[@]}"
query() { /usr/bin/python3 "$servers_dir/dns_query.py" "$@" 2>/dev/null | grep -qx 192.0.2.7; }
for server in 127.0.0.1 ::1; do
  for transport in udp tcp; do
    wait_until 10 "web.test from $server port 53 over $transport" query "$server" 53 web.test "$transport"
    echo "web.test via $server/$transport: 192.0.2.7"
  done
done
expect_audit grant 0.0.0.0 53
expect_audit grant :: 53
supervised_only "audit deny of port 54" && expect_audit deny 0.0.0.0 54
stop_server TERM
pass
