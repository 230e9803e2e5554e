// The policy model: an immutable snapshot the broker swaps whole on reload.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "address.hpp"
#include "socket_type.hpp"

namespace sockbroker::policy {

// Where something was written: for "FILE:LINE:COL" diagnostics.
struct SourcePos {
  std::string file;
  int line = 0;
  int column = 0;
};

// One [[socket.NAME.allow]] table. Every field that is set must match (AND).
struct Rule {
  std::optional<uid_t> user;
  std::optional<gid_t> group;  // primary or supplementary
  std::optional<std::string> unit;
  std::optional<std::string> executable;
  std::optional<std::string> cgroup;  // path prefix, on "/" boundaries
  SourcePos where;

  friend bool operator==(const Rule& a, const Rule& b) noexcept {
    return a.user == b.user && a.group == b.group && a.unit == b.unit && a.executable == b.executable &&
           a.cgroup == b.cgroup;
  }
};

enum class NetnsMode { broker, request };

// Which network namespaces a netns = "request" socket may be bound in. Never
// the broker's own, whatever this says. A namespace qualifies when any of
// these holds (OR); with none set, every namespace the requester can open
// qualifies (`check` warns). Each is decided from the descriptor the request
// sends and from what root controls, never from what the requester says.
struct NetnsAllow {
  // netns_owner: the uid that owns the namespace's user namespace
  // (NS_GET_USERNS, then NS_GET_OWNER_UID) is the requester's, or one of these.
  // A namespace made in a user namespace of one's own (rootless containers)
  // is owned by that uid; one made by root, or by anything in the initial
  // user namespace, by uid 0.
  bool owned_by_requester = false;
  std::vector<uid_t> owners;
  // netns_path: the namespace is bind-mounted at one of these paths, each
  // absolute and written plainly, with shell wildcards (fnmatch) in its last
  // component only ("/run/netns/ctr-*"). Only root can mount, and the broker
  // reaches the directory through root-owned directories and no link.
  std::vector<std::string> paths;

  [[nodiscard]] bool restricted() const noexcept { return owned_by_requester || !owners.empty() || !paths.empty(); }
  friend bool operator==(const NetnsAllow&, const NetnsAllow&) = default;
};

// One [socket.NAME] table.
struct SocketSpec {
  std::string name;
  Address listen;
  SocketType type = SocketType::stream;
  bool reuse_port = false;
  std::uint32_t max_grants = 0;  // 0 = unlimited
  int backlog = 511;
  std::optional<std::string> bind_to_device;
  bool free_bind = false;
  bool transparent = false;
  int fast_open = 0;
  bool v6only = true;
  std::optional<int> receive_buffer;
  std::optional<int> send_buffer;
  std::optional<uid_t> socket_user;
  std::optional<gid_t> socket_group;
  std::optional<mode_t> socket_mode;
  bool allow_abstract = false;
  NetnsMode netns = NetnsMode::broker;
  NetnsAllow netns_allow;  // netns = "request" only
  std::vector<Rule> allow;
  SourcePos where;  // of the [socket.NAME] header
};

// Whether bind(2) sees one address in both: "[::0]:80" and "[::]:80" are one,
// "[fe80::1%eth0]:80" is another once eth0 has been re-created.
[[nodiscard]] bool same_address(const Address& a, const Address& b) noexcept;

// What a reload from `a` to `b` (the same name) does to the kernel socket:
// nothing (rules and limits may differ all they like), changes made on the
// live socket (backlog, buffers, fast_open, a Unix path's owner, group and
// mode), or a new socket (an address, type or option a bound socket cannot
// change), each listed by its policy key.
struct BindingChange {
  std::vector<std::string> in_place;    // keys changed on the live socket
  std::vector<std::string> new_socket;  // keys that need a new socket
  [[nodiscard]] bool none() const noexcept { return in_place.empty() && new_socket.empty(); }
};
[[nodiscard]] BindingChange binding_change(const SocketSpec& a, const SocketSpec& b);

// True when the kernel socket bound for `a` is `b`'s as it is: every field
// that shapes the socket is equal (rules and limits may differ).
[[nodiscard]] bool same_binding(const SocketSpec& a, const SocketSpec& b) noexcept;

// What grants do while the audit trail cannot be written (a full disk, an
// I/O error, journald gone): "deny" (the default) refuses them, so no socket
// is handed out unrecorded; "continue" keeps granting, the lines kept in
// memory as far as they fit and counted as lost beyond.
enum class AuditFailure : std::uint8_t { deny, keep_granting };
[[nodiscard]] const char* to_string(AuditFailure mode) noexcept;

struct BrokerSettings {
  std::optional<gid_t> admin_group;
  mode_t control_mode = 0666;
  std::uint32_t max_clients = 1024;
  std::uint32_t max_clients_per_uid = 64;
  std::uint32_t request_timeout_ms = 2000;
  // Live grants one process may hold at once, over all sockets: bounds the
  // descriptors (reuse_port members) the broker keeps on a client's behalf.
  std::uint32_t max_grants_per_client = 256;
  AuditFailure audit_failure = AuditFailure::deny;
  // The audit lines (and log lines) one uid's refused requests may cost:
  // a token bucket of audit_burst_per_uid lines refilled at
  // audit_rate_per_uid a second (0: no limit). Root is not limited.
  std::uint32_t audit_rate_per_uid = 10;
  std::uint32_t audit_burst_per_uid = 100;
};

struct Policy {
  BrokerSettings broker;
  std::vector<SocketSpec> sockets;  // sorted by name
  std::vector<std::string> files;   // the files it was read from, in order

  // nullptr when there is no socket of that name.
  [[nodiscard]] const SocketSpec* find(std::string_view name) const noexcept;
};

}  // namespace sockbroker::policy
