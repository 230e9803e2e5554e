// What an epoll event refers to. Events carry a token, never a pointer: an
// event queued for an object that an earlier event of the same batch freed
// (a session closed, a holder released) must find nothing, not freed memory.
#pragma once

#include <cstdint>

namespace sockbroker::broker {

enum class WatchKind : std::uint64_t { control = 0, signal = 1, session = 2, holder = 3 };

// serial: unique per kind for the broker's lifetime (never reused).
[[nodiscard]] constexpr std::uint64_t make_token(WatchKind kind, std::uint64_t serial) noexcept {
  return serial << 2 | static_cast<std::uint64_t>(kind);
}

[[nodiscard]] constexpr WatchKind kind_of(std::uint64_t token) noexcept { return static_cast<WatchKind>(token & 3); }

}  // namespace sockbroker::broker
