#include "socket_factory.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "unix_socket_path.hpp"

namespace sockbroker::broker {
namespace {

int socket_type(SocketType type) {
  switch (type) {
    case SocketType::stream: return SOCK_STREAM;
    case SocketType::datagram: return SOCK_DGRAM;
    case SocketType::seqpacket: return SOCK_SEQPACKET;
  }
  return SOCK_STREAM;
}

Status set_int(int fd, int level, int option, int value, const char* name) {
  if (::setsockopt(fd, level, option, &value, sizeof value) != 0) return errno_error(std::string("setsockopt(") + name + ")");
  return Ok{};
}

// The kernel doubles SO_RCVBUF/SO_SNDBUF and clamps them to [rw]mem_max; say so
// when the operator asked for more than they got.
Status set_buffer(int fd, int option, int requested, const char* name, std::vector<std::string>& notes) {
  if (auto s = set_int(fd, SOL_SOCKET, option, requested, name); !s) return s;
  int actual = 0;
  socklen_t length = sizeof actual;
  if (::getsockopt(fd, SOL_SOCKET, option, &actual, &length) != 0) return errno_error(std::string("getsockopt(") + name + ")");
  if (actual / 2 < requested) {
    notes.push_back(std::string(name) + " " + std::to_string(requested) + " was clamped by the kernel to " +
                    std::to_string(actual / 2) + " (raise net.core." +
                    (option == SO_RCVBUF ? "rmem_max" : "wmem_max") + ")");
  }
  return Ok{};
}

// For serving inet stream sockets only, so that a bind is not refused by
// connections in TIME_WAIT (a broker restart, a reload). On a listening socket
// this lets no one else share the port. Never on a port holder (or a spare
// member, which is one until granted): it is bound and never listens, and Linux
// lets any uid that sets SO_REUSEADDR bind and listen on the port of a
// non-listening SO_REUSEADDR socket, taking the port while the workers are
// down. SO_REUSEPORT already lets the holder bind next to TIME_WAIT leftovers
// of the group's own members (same uid). Members need it all the same: their
// TIME_WAIT leftovers carry their SO_REUSEADDR, which is what lets a later
// shared socket (the policy no longer says reuse_port) bind the port before
// they expire (ReusePort.ItsTimeWait... test).
Status set_reuse_addr(int fd, const policy::SocketSpec& spec) {
  if (spec.listen.is_unix() || spec.type != SocketType::stream) return Ok{};
  return set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
}

Status listen_unless_datagram(int fd, const policy::SocketSpec& spec) {
  if (spec.type != SocketType::datagram && ::listen(fd, spec.backlog) != 0) return errno_error("listen");
  return Ok{};
}

Status apply_options(int fd, const policy::SocketSpec& spec, SocketRole role, std::vector<std::string>& notes) {
  const bool v6 = spec.listen.family() == AF_INET6;
  if (role == SocketRole::serving) {
    if (auto s = set_reuse_addr(fd, spec); !s) return s;
  }
  if (v6) {
    if (auto s = set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, spec.v6only ? 1 : 0, "IPV6_V6ONLY"); !s) return s;
  }
  if (spec.reuse_port) {
    if (auto s = set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT"); !s) return s;
  }
  if (spec.bind_to_device) {
    const std::string& device = *spec.bind_to_device;
    if (::setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, device.c_str(), static_cast<socklen_t>(device.size())) != 0) {
      return errno_error("setsockopt(SO_BINDTODEVICE, \"" + device + "\")");
    }
  }
  if (spec.free_bind) {
    auto s = v6 ? set_int(fd, IPPROTO_IPV6, IPV6_FREEBIND, 1, "IPV6_FREEBIND")
                : set_int(fd, IPPROTO_IP, IP_FREEBIND, 1, "IP_FREEBIND");
    if (!s) return s;
  }
  if (spec.transparent) {
    auto s = v6 ? set_int(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, 1, "IPV6_TRANSPARENT")
                : set_int(fd, IPPROTO_IP, IP_TRANSPARENT, 1, "IP_TRANSPARENT");
    if (!s) return s;
  }
  if (spec.fast_open > 0) {
    if (auto s = set_int(fd, IPPROTO_TCP, TCP_FASTOPEN, spec.fast_open, "TCP_FASTOPEN"); !s) return s;
  }
  if (spec.receive_buffer) {
    if (auto s = set_buffer(fd, SO_RCVBUF, *spec.receive_buffer, "receive_buffer", notes); !s) return s;
  }
  if (spec.send_buffer) {
    if (auto s = set_buffer(fd, SO_SNDBUF, *spec.send_buffer, "send_buffer", notes); !s) return s;
  }
  return Ok{};
}

}  // namespace

Result<OpenedSocket> open_policy_socket(const policy::SocketSpec& spec, SocketRole role) {
  OpenedSocket out;
  out.fd.reset(::socket(spec.listen.family(), socket_type(spec.type) | SOCK_CLOEXEC, 0));
  if (!out.fd) return errno_error("socket");
  if (auto s = apply_options(out.fd.get(), spec, role, out.notes); !s) return std::move(s).error();

  if (spec.listen.kind == policy::Address::Kind::unix_path) {
    auto file = bind_unix_path(out.fd.get(), spec, out.notes);
    if (!file) return std::move(file).error();
    out.path_file = *file;
  } else if (::bind(out.fd.get(), spec.listen.sockaddr_ptr(), spec.listen.length) != 0) {
    return errno_error("bind " + spec.listen.text);
  }
  if (role == SocketRole::serving) {
    if (auto s = listen_unless_datagram(out.fd.get(), spec); !s) return std::move(s).error();
  }
  return out;
}

Status change_in_place(int fd, const policy::SocketSpec& next, bool listening, std::vector<std::string>& notes) {
  if (listening && ::listen(fd, next.backlog) != 0) return errno_error("listen (new backlog)");
  if (next.receive_buffer) {
    if (auto s = set_buffer(fd, SO_RCVBUF, *next.receive_buffer, "receive_buffer", notes); !s) return s;
  }
  if (next.send_buffer) {
    if (auto s = set_buffer(fd, SO_SNDBUF, *next.send_buffer, "send_buffer", notes); !s) return s;
  }
  if (!next.listen.is_unix() && next.type == SocketType::stream) {
    if (auto s = set_int(fd, IPPROTO_TCP, TCP_FASTOPEN, next.fast_open, "TCP_FASTOPEN"); !s) return s;
  }
  return Ok{};
}

Status start_serving(int fd, const policy::SocketSpec& spec) {
  if (auto s = set_reuse_addr(fd, spec); !s) return s;
  return listen_unless_datagram(fd, spec);
}

}  // namespace sockbroker::broker
