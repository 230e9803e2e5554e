// The plain values that cross the control socket. Nothing outside proto/codec.cpp
// sees a Cap'n Proto reader or builder: the codec turns datagrams into these.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <sockbroker/status.hpp>

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

// The answer to an administrator's status request (wire: Status; named apart
// from sockbroker::Status, the Result type): the public BrokerStatus itself,
// decoded straight into. Its `sockets` stay empty on the wire: the rows travel
// as the administrator's listing, in pages, so that a status fits one datagram.
// Bounded by the codec: kMaxStatusPaths, kMaxStatusReasons, the text lengths.
using StatusReport = BrokerStatus;

// Unsolicited, on a watching connection: a revoke or a reload ended a grant.
struct Notice {
  std::string socket;
  std::string message;
};

using Reply = std::variant<Grant, Failure, Listing, Outcome, StatusReport, Notice>;

const char* to_string(ErrorCode code) noexcept;

}  // namespace sockbroker::proto
