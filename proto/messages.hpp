// The plain values that cross the control socket. Nothing outside proto/codec.cpp
// sees a Cap'n Proto reader or builder: the codec turns datagrams into these.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace sockbroker::proto {

inline constexpr std::uint16_t kProtocolVersion = 1;

// Longest socket name a request may carry; policy names obey the same bound.
inline constexpr std::size_t kMaxNameLength = 128;

enum class SocketType : std::uint8_t { stream, datagram, seqpacket };

enum class ErrorCode : std::uint8_t { unknown_socket, denied, quota, bind, protocol, invalid, system };

struct AcquireRequest {
  std::string name;
  std::uint32_t flags = 0;
  bool with_netns = false;
};

struct ListRequest {
  std::uint32_t cursor = 0;
};

struct ReloadRequest {};

struct RevokeRequest {
  std::string name;
};

using Request = std::variant<AcquireRequest, ListRequest, ReloadRequest, RevokeRequest>;

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
};

using Reply = std::variant<Grant, Failure, Listing, Outcome>;

const char* to_string(SocketType type) noexcept;
const char* to_string(ErrorCode code) noexcept;

}  // namespace sockbroker::proto
