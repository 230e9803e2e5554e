#include "journal_sender.hpp"

#include <endian.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace sockbroker::broker {
namespace {

// What libsystemd asks for on its journal socket (SNDBUF_SIZE). A datagram may
// be nearly as large as the buffer.
constexpr int kSendBuffer = 8 * 1024 * 1024;

}  // namespace

Result<JournalSender> JournalSender::open(std::string_view path) {
  if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path)) {
    return Error{0, ENAMETOOLONG, "journal socket path \"" + std::string(path) + "\" does not fit a Unix address"};
  }
  UniqueFd socket(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!socket) return errno_error("socket (the journal)");
  // Best effort, as libsystemd: FORCE passes net.core.wmem_max with
  // CAP_NET_ADMIN; the default buffer holds a burst too, only less of one.
  if (::setsockopt(socket.get(), SOL_SOCKET, SO_SNDBUFFORCE, &kSendBuffer, sizeof kSendBuffer) != 0) {
    (void)::setsockopt(socket.get(), SOL_SOCKET, SO_SNDBUF, &kSendBuffer, sizeof kSendBuffer);
  }
  return JournalSender(std::move(socket), std::string(path));
}

int JournalSender::send(const std::vector<std::string>& fields) {
  datagram_.clear();
  for (const std::string& field : fields) {
    const std::size_t equals = field.find('=');
    if (equals == std::string::npos || equals == 0) return EINVAL;
    const std::string_view value = std::string_view(field).substr(equals + 1);
    if (value.find('\n') == std::string_view::npos) {
      datagram_ += field;  // NAME=value
    } else {
      // NAME, a newline, the value's length (64-bit little-endian), the value.
      datagram_.append(field, 0, equals);
      datagram_ += '\n';
      const std::uint64_t length = htole64(value.size());
      datagram_.append(reinterpret_cast<const char*>(&length), sizeof length);
      datagram_ += value;
    }
    datagram_ += '\n';
  }
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path_.c_str(), path_.size() + 1);
  const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path_.size() + 1);
  for (;;) {
    // MSG_DONTWAIT: a full queue is EAGAIN, not a wait (the header says why).
    if (::sendto(socket_.get(), datagram_.data(), datagram_.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                 reinterpret_cast<const sockaddr*>(&address), length) >= 0) {
      return 0;
    }
    if (errno != EINTR) return errno;
  }
}

}  // namespace sockbroker::broker
