// Where the broker listens unless told otherwise. The public API states the
// same path for its users (client.hpp's kDefaultControlPath); client.cpp
// checks at compile time that the two agree.
#pragma once

namespace sockbroker {

inline constexpr const char* kDefaultControlSocket = "/run/sockbroker/control.sock";

}  // namespace sockbroker
