#include "socket_type.hpp"

namespace sockbroker {

const char* to_string(SocketType type) noexcept {
  switch (type) {
    case SocketType::stream: return "stream";
    case SocketType::datagram: return "datagram";
    case SocketType::seqpacket: return "seqpacket";
  }
  return "?";
}

}  // namespace sockbroker
