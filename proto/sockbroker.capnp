@0xd13f77af1cc5f014;
# The sockbroker wire protocol.
#
# One message per SOCK_SEQPACKET datagram on the control socket, at most 4 KiB
# (proto/codec.hpp: kMaxDatagram), flat-array encoded (segment table first).
# A client sends one Request and reads one Reply before sending the next.
# A granted descriptor travels with its Reply as SCM_RIGHTS; a request for a
# netns = "request" socket carries one network-namespace descriptor the same way.
#
# Compatibility: fields and union members are only ever appended. A peer whose
# `version` differs is answered with a `protocol` error naming both versions.

$import "/capnp/c++.capnp".namespace("sockbroker::wire");

const protocolVersion :UInt16 = 1;

enum SocketType {
  stream @0;
  datagram @1;
  seqpacket @2;
}

enum ErrorCode {
  unknownSocket @0;   # no socket of that name in the policy
  denied @1;          # no rule grants it to the caller
  quota @2;           # a grant or client limit is reached
  bind @3;            # the broker could not create or bind the socket
  protocol @4;        # malformed request, wrong version, unknown kind
  invalid @5;         # well-formed but meaningless request
  system @6;          # the broker hit a system error
}

struct Request {
  version @0 :UInt16;
  union {
    acquire @1 :Acquire;
    listSockets @2 :ListSockets;
    reload @3 :Void;          # administrators: re-read the policy now
    revoke @4 :Revoke;        # administrators: shut a socket down for every holder
    status @5 :Void;          # administrators: the broker's counters (per socket: listSockets)
    acquireAddress @6 :AcquireAddress;  # a supervised program's bind(2): the socket at that address
    watch @7 :Void;           # keep this connection open to be told of revocations (Notice)
    upgrade @8 :Void;         # administrators: re-execute the broker's binary in place (answered first)
  }
}

# What a program under `sockbroker run` passed to bind(2), as its supervisor
# read it: the broker answers with the policy socket bound at that address (of
# that type, and for IPv6 that IPV6_V6ONLY), if the caller may acquire it.
struct AcquireAddress {
  type @0 :SocketType;
  family @1 :UInt16;    # AF_INET, AF_INET6 or AF_UNIX
  port @2 :UInt16;      # IP: 1..65535
  address @3 :Data;     # IP: 4 or 16 bytes, network order; Unix: the sun_path bytes ("\0name" if abstract)
  scopeId @4 :UInt32;   # IPv6 link-local scope
  v6only @5 :Bool;      # the program's IPV6_V6ONLY (IPv6 only)
}

struct Revoke {
  name @0 :Text;
}

struct Acquire {
  name @0 :Text;
  flags @1 :UInt32;
  withNetns @2 :Bool;   # a network-namespace descriptor is attached
}

struct ListSockets {
  cursor @0 :UInt32;    # 0 for the first page; then the reply's nextCursor
  withHolders @1 :Bool; # administrators: each entry's holding processes too
}

struct Reply {
  version @0 :UInt16;
  union {
    grant @1 :Grant;
    failure @2 :Failure;
    listing @3 :Listing;
    outcome @4 :Outcome;      # answer to reload and revoke
    status @5 :Status;        # answer to status
    notice @6 :Notice;        # unsolicited, on a watching connection: a grant of its process ended
  }
}

# Sent, unasked, to a connection that sent `watch` when a revoke or a reload
# ended a grant its connecting process holds: the socket was shut down (a
# shared one) or left to it (a reuse_port member, which the broker cannot shut
# down). Either way the holder should restart to get the socket afresh.
struct Notice {
  socket @0 :Text;      # the socket's policy name
  message @1 :Text;     # one line: what happened, for the holder's log
}

struct Outcome {
  ok @0 :Bool;
  message @1 :Text;         # one line: what happened
  details @2 :List(Text);   # e.g. the policy's diagnostics, one FILE:LINE:COL line each
  failedSockets @3 :List(Text);  # sockets the broker was to (re)bind and could not (it retries them)
}

struct Grant {
  name @0 :Text;
  type @1 :SocketType;
  family @2 :UInt16;    # AF_INET, AF_INET6 or AF_UNIX
  address @3 :Text;     # as the policy writes it: "0.0.0.0:80", "[::1]:53", "/run/x.sock"
}

struct Peer {
  # What the broker saw of the caller, so that a denial can be understood.
  pid @0 :Int32;
  uid @1 :UInt32;
  gid @2 :UInt32;
  unit @3 :Text;
}

struct Failure {
  code @0 :ErrorCode;
  message @1 :Text;
  peer @2 :Peer;        # set on denials
}

struct SocketEntry {
  name @0 :Text;
  type @1 :SocketType;
  address @2 :Text;
  # Filled for administrators only:
  state @3 :Text;       # "bound", "failed"
  detail @4 :Text;      # why it failed
  holders @5 :UInt32;   # live grants (holders still running)
  grantsTotal @6 :UInt64;
  maxGrants @7 :UInt32;   # 0: unlimited
  reusePort @8 :Bool;
  inodes @9 :List(UInt64);   # st_ino of the kernel sockets held and granted (at most 64)
  holderRows @10 :List(HolderRow);  # with withHolders: the processes holding it (at most 8; `holders` counts all)
}

struct HolderRow {
  pid @0 :Int32;
  uid @1 :UInt32;
  unit @2 :Text;        # its systemd unit, "" when none is known
}

struct Listing {
  entries @0 :List(SocketEntry);
  nextCursor @1 :UInt32;   # 0 when this is the last page
  admin @2 :Bool;          # the caller sees the administrator's view
}

struct ReasonCount {
  reason @0 :Text;     # as the audit log's deny events name it: "no_rule_matched", "quota", ...
  count @1 :UInt64;
}

# The broker's counters, for `sockbroker status`. Fixed size but for the bounded
# lists (proto/codec.hpp: kMaxStatusPaths, kMaxStatusReasons), so it always fits
# one datagram; the per-socket rows (grants, holders, state) are the
# administrator's listSockets pages, which are bounded and cursored already.
struct Status {
  version @0 :Text;             # the broker's version, e.g. "0.1.0"
  pid @1 :Int32;
  startTime @2 :Int64;          # Unix time (seconds) the broker started
  uptimeSeconds @3 :UInt64;     # monotonic, immune to clock changes
  policyGeneration @4 :UInt64;  # 1 at start, +1 per successful reload
  policyPaths @5 :List(Text);   # the files the policy in force was read from
  socketsBound @6 :UInt32;
  socketsFailed @7 :UInt32;
  grantsTotal @8 :UInt64;       # since start, every socket
  denials @9 :List(ReasonCount);
  badRequests @10 :UInt64;      # datagrams that did not decode
  clients @11 :UInt32;          # control connections open now (this one included)
  peakClients @12 :UInt32;
  fds @13 :UInt32;              # descriptors the broker holds
  reloadsOk @14 :UInt64;
  reloadsFailed @15 :UInt64;
  lastReloadTime @16 :Int64;    # Unix time (seconds); 0: never reloaded
  lastReloadOk @17 :Bool;
  lastReloadMessage @18 :Text;
  # The audit trail (broker/audit.hpp). A broker older than these fields
  # sends their defaults: auditFailure "" reads as unknown.
  auditFailure @19 :Text;       # "deny" | "continue": what grants do while the trail cannot be written
  auditFailing @20 :Bool;       # the last write of the trail failed; its lines wait in memory
  auditError @21 :Text;         # that write's error, e.g. "No space left on device"
  auditFailingSince @22 :Int64; # Unix time (seconds) it began failing; 0 when it is not
  auditLinesLost @23 :UInt64;   # lines that never reached the trail, since start
  auditSuppressed @24 :UInt64;  # lines the per-uid rate limit dropped (audit_rate_per_uid), since start
  upgrades @25 :UInt64;         # upgrades in place since the broker started (SIGUSR2, sockbroker upgrade)
  lastUpgradeTime @26 :Int64;   # Unix time (seconds); 0: never upgraded
  auditLinesWaiting @27 :UInt64; # lines kept in memory, not yet written (while failing: the backlog)
  auditKeptInStore @28 :Bool;   # a copy of them waits in systemd's descriptor store (a restart writes them)
  auditKeptInFile @29 :Text;    # the file a copy of them waits in for the next broker; "": none
}
