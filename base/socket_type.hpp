// The kinds of socket a policy can declare and a grant can carry, and the
// address a program hands to bind(2), in plain values: the policy, the wire
// and the client all speak of them, so none of them owns them.
#pragma once

#include <cstdint>
#include <vector>

namespace sockbroker {

enum class SocketType : std::uint8_t { stream, datagram, seqpacket };

// "stream", "datagram", "seqpacket": the policy's `type` words.
[[nodiscard]] const char* to_string(SocketType type) noexcept;

// An address as bind(2) takes it (the wire's decoder checks each field against
// its family).
struct SocketAddress {
  std::uint16_t family = 0;         // AF_INET, AF_INET6, AF_UNIX
  std::uint16_t port = 0;           // IP only
  std::vector<std::uint8_t> bytes;  // 4 or 16 (IP, network order), or 1..108 (sun_path)
  std::uint32_t scope_id = 0;       // IPv6 only
};

}  // namespace sockbroker
