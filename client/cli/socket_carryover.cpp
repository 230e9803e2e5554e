#include "socket_carryover.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace sockbroker::cli {
namespace {

struct Option {
  int level;
  int name;
  const char* what;
  bool tcp_only;
  bool buffer;  // the kernel doubles what is set: set half of what it reports
};

constexpr Option kOptions[] = {
    {SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", false, false},
    {SOL_SOCKET, SO_PRIORITY, "SO_PRIORITY", false, false},
    {SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", false, true},
    {SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF", false, true},
    {IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY", true, false},
    {IPPROTO_TCP, TCP_DEFER_ACCEPT, "TCP_DEFER_ACCEPT", true, false},
    {IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE", true, false},
    {IPPROTO_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL", true, false},
    {IPPROTO_TCP, TCP_KEEPCNT, "TCP_KEEPCNT", true, false},
    {IPPROTO_TCP, TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT", true, false},
};

int int_option(int fd, int level, int name, bool* ok) {
  int value = 0;
  socklen_t length = sizeof value;
  *ok = ::getsockopt(fd, level, name, &value, &length) == 0;
  return value;
}

}  // namespace

Result<Carried> carry_over(int program, int granted) {
  Carried out;
  int family = 0, type = 0, protocol = 0;
  socklen_t length = sizeof family;
  if (::getsockopt(program, SOL_SOCKET, SO_DOMAIN, &family, &length) != 0) return errno_error("getsockopt(SO_DOMAIN)");
  length = sizeof type;
  if (::getsockopt(program, SOL_SOCKET, SO_TYPE, &type, &length) != 0) return errno_error("getsockopt(SO_TYPE)");
  length = sizeof protocol;
  if (::getsockopt(program, SOL_SOCKET, SO_PROTOCOL, &protocol, &length) != 0) return errno_error("getsockopt(SO_PROTOCOL)");
  // What the program's socket would hold had nobody touched it.
  UniqueFd pristine(::socket(family, type | SOCK_CLOEXEC, protocol));
  if (!pristine) return errno_error("socket (a pristine one to compare with)");
  const bool tcp = (family == AF_INET || family == AF_INET6) && type == SOCK_STREAM;

  auto set = [&](int level, int name, const void* value, socklen_t size, const char* what) -> Status {
    if (::setsockopt(granted, level, name, value, size) != 0) {
      return errno_error(std::string("the program set ") + what + " on its socket, and it cannot be set on the "
                         "broker's");
    }
    out.options.push_back(what);
    return Ok{};
  };

  for (const Option& option : kOptions) {
    if (option.tcp_only && !tcp) continue;
    bool have = false, have_default = false;
    const int value = int_option(program, option.level, option.name, &have);
    const int fresh = int_option(pristine.get(), option.level, option.name, &have_default);
    if (!have || !have_default || value == fresh) continue;
    const int wanted = option.buffer ? value / 2 : value;
    if (auto s = set(option.level, option.name, &wanted, sizeof wanted, option.what); !s) return std::move(s).error();
  }
  {
    linger mine{}, fresh{};
    socklen_t size = sizeof mine;
    if (::getsockopt(program, SOL_SOCKET, SO_LINGER, &mine, &size) == 0 &&
        ::getsockopt(pristine.get(), SOL_SOCKET, SO_LINGER, &fresh, &size) == 0 &&
        (mine.l_onoff != fresh.l_onoff || mine.l_linger != fresh.l_linger)) {
      if (auto s = set(SOL_SOCKET, SO_LINGER, &mine, sizeof mine, "SO_LINGER"); !s) return std::move(s).error();
    }
  }
  if (family == AF_INET || family == AF_INET6) {
    const int level = family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
    const int name = family == AF_INET ? IP_TOS : IPV6_TCLASS;
    bool have = false, have_default = false;
    const int value = int_option(program, level, name, &have);
    const int fresh = int_option(pristine.get(), level, name, &have_default);
    if (have && have_default && value != fresh) {
      if (auto s = set(level, name, &value, sizeof value, family == AF_INET ? "IP_TOS" : "IPV6_TCLASS"); !s) {
        return std::move(s).error();
      }
    }
  }
  // O_NONBLOCK belongs to the open file, which the program's descriptor will
  // be once the granted socket is in its place, and which other holders of a
  // shared socket have too. It is only ever set, never cleared: a holder
  // that accepts without blocking must never find its accept(2) blocking.
  const int flags = ::fcntl(program, F_GETFL);
  const int granted_flags = ::fcntl(granted, F_GETFL);
  if (flags < 0 || granted_flags < 0) return errno_error("fcntl(F_GETFL)");
  if ((flags & O_NONBLOCK) != 0 && (granted_flags & O_NONBLOCK) == 0) {
    if (::fcntl(granted, F_SETFL, granted_flags | O_NONBLOCK) != 0) {
      return errno_error("fcntl(F_SETFL, O_NONBLOCK) on the broker's socket");
    }
    out.options.push_back("O_NONBLOCK");
  }
  return out;
}

}  // namespace sockbroker::cli
