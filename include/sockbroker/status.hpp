// What the broker reports of its sockets and of itself: `sockbroker list`'s
// rows and `sockbroker status`'s counters. Plain values, shared by the C++ API
// (client.hpp) and the wire codec, which decodes a status reply straight into
// BrokerStatus: the message is described by the schema (sockbroker.capnp) and
// here, once.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sockbroker {

// One line of `sockbroker list`.
struct SocketInfo {
  std::string name;
  std::string type;
  std::string address;
  // The administrator's view only (is_admin_view on the listing):
  std::string state;    // "bound" or "failed"
  std::string detail;   // why it failed
  std::uint32_t holders = 0;        // live grants: held by processes still running
  std::uint64_t grants_total = 0;   // since the socket was (re)bound
  std::uint32_t max_grants = 0;     // 0: unlimited
  bool reuse_port = false;
  // Inodes (st_ino) of the kernel sockets behind this entry: the one the broker
  // holds and each one it granted whose holder still runs (a reuse_port member
  // per worker). What `ss -e` or /proc/PID/fd shows as "socket:[INODE]".
  // At most proto::kMaxInodesPerEntry of them.
  std::vector<std::uint64_t> inodes = {};
};

// What `sockbroker status` shows: the broker's counters since it started.
struct BrokerStatus {
  std::string version;             // the broker's
  int pid = 0;
  std::int64_t start_time = 0;     // Unix seconds
  std::uint64_t uptime_seconds = 0;
  std::uint64_t policy_generation = 0;  // 1 at start, +1 per successful reload
  std::vector<std::string> policy_paths;  // the files of the policy in force (at most 8 lines)
  std::uint32_t sockets_bound = 0;
  std::uint32_t sockets_failed = 0;
  std::uint64_t grants_total = 0;
  // Denials by the reason audit events give ("no_rule_matched", "quota", "not_admin", ...).
  std::vector<std::pair<std::string, std::uint64_t>> denials;
  std::uint64_t bad_requests = 0;  // datagrams that did not decode
  std::uint32_t clients = 0;       // control connections now, this one included
  std::uint32_t peak_clients = 0;
  std::uint32_t fds = 0;           // descriptors the broker holds
  std::uint64_t reloads_ok = 0;
  std::uint64_t reloads_failed = 0;
  std::int64_t last_reload_time = 0;  // Unix seconds; 0: never reloaded
  bool last_reload_ok = false;
  std::string last_reload_message;
  std::uint64_t upgrades = 0;          // upgrades in place since the broker started
  std::int64_t last_upgrade_time = 0;  // Unix seconds; 0: never
  std::vector<SocketInfo> sockets;  // every socket, the administrator's view of list()
  // The audit trail. audit_failure: what grants do while it cannot be
  // written, "deny" or "continue" ("" from a broker too old to say).
  std::string audit_failure;
  bool audit_failing = false;           // its last write failed; lines wait in the broker's memory
  std::string audit_error;              // that write's error, while failing
  std::int64_t audit_failing_since = 0;  // Unix seconds; 0 when not failing
  std::uint64_t audit_lines_lost = 0;    // lines that never reached it, since the broker started
  std::uint64_t audit_suppressed = 0;    // lines the per-uid rate limit dropped, since the broker started
  std::uint64_t audit_lines_waiting = 0;  // lines in the broker's memory not yet written
  bool audit_kept_in_store = false;       // a copy of them is in systemd's store: a restart writes them
  std::string audit_kept_in_file;         // the file a copy of them is in for the next broker; "": none
};

}  // namespace sockbroker
