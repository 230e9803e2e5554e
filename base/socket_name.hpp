// What a socket name may be. The policy names its sockets and a request names
// the one it wants; both sides check the same rule.
#pragma once

#include <cstddef>
#include <string_view>

namespace sockbroker {

// Longest socket name a request may carry; policy names obey the same bound.
inline constexpr std::size_t kMaxNameLength = 128;

// True if name may be a socket name: 1..kMaxNameLength of [A-Za-z0-9_.-] (no ":", which
// separates LISTEN_FDNAMES).
[[nodiscard]] bool valid_socket_name(std::string_view name) noexcept;

}  // namespace sockbroker
