#include "socket_name.hpp"

#include <algorithm>

namespace sockbroker {

bool valid_socket_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
  });
}

}  // namespace sockbroker
