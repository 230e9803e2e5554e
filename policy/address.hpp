// Socket addresses as the policy writes them.
#pragma once

#include <sys/socket.h>

#include <sockbroker/fd.hpp>

#include "socket_type.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace sockbroker::policy {

struct Address {
  enum class Kind { inet4, inet6, unix_path, unix_abstract };
  Kind kind = Kind::inet4;
  sockaddr_storage storage{};  // ready for bind(2)
  socklen_t length = 0;
  std::string text;  // as written in the policy: "0.0.0.0:80", "[::1]:53", "/run/x.sock", "@name"

  [[nodiscard]] int family() const noexcept;       // AF_INET, AF_INET6, AF_UNIX
  [[nodiscard]] std::uint16_t port() const noexcept;  // 0 for Unix
  [[nodiscard]] bool is_wildcard() const noexcept;    // 0.0.0.0 or ::
  [[nodiscard]] bool is_unix() const noexcept { return kind == Kind::unix_path || kind == Kind::unix_abstract; }
  [[nodiscard]] const sockaddr* sockaddr_ptr() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
  friend bool operator==(const Address& a, const Address& b) noexcept { return a.text == b.text && a.kind == b.kind; }
};

// Parses "a.b.c.d:port", "[v6addr]:port" (optionally "[fe80::1%eth0]:port"),
// "/absolute/path" (at most 107 bytes) and "@abstract". Ports are 1..65535.
// The error message names what is wrong, without a source position.
[[nodiscard]] Result<Address> parse_address(std::string_view text);

// The address a program passed to bind(2), in the form the policy writes it
// ("0.0.0.0:80", "[::]:80", "[fe80::1%2]:80", "/run/x.sock", "@name"), for
// comparing with the policy's (same_address) and for messages. A Unix path
// must be written as the policy would (absolute, plain).
[[nodiscard]] Result<Address> address_of(const SocketAddress& address);

}  // namespace sockbroker::policy
