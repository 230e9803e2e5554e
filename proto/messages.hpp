// The plain values that cross the control socket. Nothing outside proto/codec.cpp
// sees a Cap'n Proto reader or builder: the codec turns datagrams into these.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "socket_name.hpp"
#include "socket_type.hpp"

namespace sockbroker::proto {

inline constexpr std::uint16_t kProtocolVersion = 1;

enum class ErrorCode : std::uint8_t { unknown_socket, denied, quota, bind, protocol, invalid, system };

struct AcquireRequest {
  std::string name;
  std::uint32_t flags = 0;
  bool with_netns = false;
};

struct ListRequest {
  std::uint32_t cursor = 0;
  bool with_holders = false;  // administrators: SocketEntry::holder_rows filled
};

struct ReloadRequest {};

struct RevokeRequest {
  std::string name;
};

// Administrators: the broker's counters (the per-socket rows are ListRequest pages).
struct StatusRequest {};

// A supervised program's bind(2): the policy socket at that address, if any.
struct AcquireAddressRequest {
  SocketType type = SocketType::stream;
  SocketAddress address;
  bool v6only = true;  // the program's IPV6_V6ONLY (IPv6 only)
};

// Keep this connection: it is exempt from request_timeout_ms from now on, and
// Notices come on it (one per revoked grant of its connecting process).
struct WatchRequest {};

// Administrators: re-execute the broker's binary from disk, keeping its pid,
// sockets, leases and counters (answered before it happens).
struct UpgradeRequest {};

using Request = std::variant<AcquireRequest, ListRequest, ReloadRequest, RevokeRequest, StatusRequest,
                             AcquireAddressRequest, WatchRequest, UpgradeRequest>;

struct Grant {
  std::string name;
  SocketType type = SocketType::stream;
  std::uint16_t family = 0;
  std::string address;
};

struct PeerView {
  std::int32_t pid = 0;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::string unit;
};

struct Failure {
  ErrorCode code = ErrorCode::system;
  std::string message;
  std::optional<PeerView> peer;
};

struct SocketEntry {
  std::string name;
  SocketType type = SocketType::stream;
  std::string address;
  std::string state;   // admin view only
  std::string detail;  // admin view only
  std::uint32_t holders = 0;       // live grants
  std::uint64_t grants_total = 0;  // since start (or since the entry changed)
  std::uint32_t max_grants = 0;
  bool reuse_port = false;
  std::vector<std::uint64_t> inodes = {};  // admin view only; at most kMaxInodesPerEntry
  // Admin view, when asked for: the processes holding it; at most
  // kMaxHolderRowsPerEntry (holders counts them all).
  struct HolderRow {
    std::int32_t pid = 0;
    std::uint32_t uid = 0;
    std::string unit;  // "" when none is known
  };
  std::vector<HolderRow> holder_rows = {};
};

struct Listing {
  std::vector<SocketEntry> entries;
  std::uint32_t next_cursor = 0;
  bool admin = false;
};

// The answer to an administrator's reload or revoke.
struct Outcome {
  bool ok = false;
  std::string message;
  std::vector<std::string> details;
  std::vector<std::string> failed_sockets;  // names; at most kMaxOutcomeFailed
};

struct ReasonCount {
  std::string reason;  // as audit deny events name it
  std::uint64_t count = 0;
};

// The answer to an administrator's status request (wire: Status; named apart from
// sockbroker::Status, the Result type); see sockbroker.capnp.
struct StatusReport {
  std::string version;
  std::int32_t pid = 0;
  std::int64_t start_time = 0;  // Unix seconds
  std::uint64_t uptime_seconds = 0;
  std::uint64_t policy_generation = 0;
  std::vector<std::string> policy_paths;  // at most kMaxStatusPaths
  std::uint32_t sockets_bound = 0;
  std::uint32_t sockets_failed = 0;
  std::uint64_t grants_total = 0;
  std::vector<ReasonCount> denials;  // at most kMaxStatusReasons
  std::uint64_t bad_requests = 0;
  std::uint32_t clients = 0;
  std::uint32_t peak_clients = 0;
  std::uint32_t fds = 0;
  std::uint64_t reloads_ok = 0;
  std::uint64_t reloads_failed = 0;
  std::int64_t last_reload_time = 0;  // 0: never
  bool last_reload_ok = false;
  std::string last_reload_message;
  std::uint64_t upgrades = 0;
  std::int64_t last_upgrade_time = 0;  // 0: never
  // The audit trail.
  std::string audit_failure;  // "deny" | "continue"; "" from a broker that does not say
  bool audit_failing = false;
  std::string audit_error;              // at most kMaxStatusAuditErrorLength
  std::int64_t audit_failing_since = 0;  // Unix seconds; 0: not failing
  std::uint64_t audit_lines_lost = 0;
  std::uint64_t audit_suppressed = 0;
};

// Unsolicited, on a watching connection: a revoke or a reload ended a grant.
struct Notice {
  std::string socket;
  std::string message;
};

using Reply = std::variant<Grant, Failure, Listing, Outcome, StatusReport, Notice>;

const char* to_string(ErrorCode code) noexcept;

}  // namespace sockbroker::proto
