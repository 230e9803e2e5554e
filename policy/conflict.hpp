// Which policy sockets could not both be bound. Internal to the policy library.
#pragma once

#include <string>

#include "policy.hpp"

namespace sockbroker::policy::detail {

// Sockets that might conflict share a key; sockets with different keys never
// conflict. Lets the loader compare only within small groups.
[[nodiscard]] std::string conflict_key(const SocketSpec& spec);

// True when the kernel would refuse to bind one while the other is bound
// (EADDRINUSE), as the broker binds both in the same namespace. Only meaningful
// for two specs with equal conflict_key().
[[nodiscard]] bool bindings_conflict(const SocketSpec& a, const SocketSpec& b);

}  // namespace sockbroker::policy::detail
