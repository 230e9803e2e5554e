#include "socket_carryover.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <optional>

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

constexpr std::size_t kOptionCount = sizeof kOptions / sizeof kOptions[0];

}  // namespace

struct PristineDefaults::Values {
  std::array<std::optional<int>, kOptionCount> options;  // unset: not readable on this kind
  std::optional<linger> so_linger;
  std::optional<int> tos;  // IP_TOS or IPV6_TCLASS
};

struct PristineDefaults::Kind {
  int family, type, protocol;
  Values values;
};

PristineDefaults::PristineDefaults() = default;
PristineDefaults::~PristineDefaults() = default;

Result<const PristineDefaults::Values*> PristineDefaults::of(int family, int type, int protocol) {
  for (const Kind& kind : kinds_) {
    if (kind.family == family && kind.type == type && kind.protocol == protocol) return &kind.values;
  }
  UniqueFd pristine(::socket(family, type | SOCK_CLOEXEC, protocol));
  if (!pristine) return errno_error("socket (a pristine one to compare with)");
  Values values;
  for (std::size_t i = 0; i < kOptionCount; ++i) {
    bool have = false;
    const int value = int_option(pristine.get(), kOptions[i].level, kOptions[i].name, &have);
    if (have) values.options[i] = value;
  }
  linger fresh{};
  socklen_t size = sizeof fresh;
  if (::getsockopt(pristine.get(), SOL_SOCKET, SO_LINGER, &fresh, &size) == 0) values.so_linger = fresh;
  if (family == AF_INET || family == AF_INET6) {
    bool have = false;
    const int value = int_option(pristine.get(), family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6,
                                 family == AF_INET ? IP_TOS : IPV6_TCLASS, &have);
    if (have) values.tos = value;
  }
  kinds_.push_back(Kind{family, type, protocol, values});
  return &kinds_.back().values;
}

Result<Carried> carry_over(int program, int granted, PristineDefaults& defaults) {
  Carried out;
  int family = 0, type = 0, protocol = 0;
  socklen_t length = sizeof family;
  if (::getsockopt(program, SOL_SOCKET, SO_DOMAIN, &family, &length) != 0) return errno_error("getsockopt(SO_DOMAIN)");
  length = sizeof type;
  if (::getsockopt(program, SOL_SOCKET, SO_TYPE, &type, &length) != 0) return errno_error("getsockopt(SO_TYPE)");
  length = sizeof protocol;
  if (::getsockopt(program, SOL_SOCKET, SO_PROTOCOL, &protocol, &length) != 0) return errno_error("getsockopt(SO_PROTOCOL)");
  // What the program's socket would hold had nobody touched it.
  auto pristine = defaults.of(family, type, protocol);
  if (!pristine) return std::move(pristine).error();
  const PristineDefaults::Values& fresh = **pristine;
  const bool tcp = (family == AF_INET || family == AF_INET6) && type == SOCK_STREAM;

  auto set = [&](int level, int name, const void* value, socklen_t size, const char* what) -> Status {
    if (::setsockopt(granted, level, name, value, size) != 0) {
      return errno_error(std::string("the program set ") + what + " on its socket, and it cannot be set on the "
                         "broker's");
    }
    out.options.push_back(what);
    return Ok{};
  };

  for (std::size_t i = 0; i < kOptionCount; ++i) {
    const Option& option = kOptions[i];
    if (option.tcp_only && !tcp) continue;
    bool have = false;
    const int value = int_option(program, option.level, option.name, &have);
    if (!have || !fresh.options[i] || value == *fresh.options[i]) continue;
    const int wanted = option.buffer ? value / 2 : value;
    if (auto s = set(option.level, option.name, &wanted, sizeof wanted, option.what); !s) return std::move(s).error();
  }
  {
    linger mine{};
    socklen_t size = sizeof mine;
    if (fresh.so_linger && ::getsockopt(program, SOL_SOCKET, SO_LINGER, &mine, &size) == 0 &&
        (mine.l_onoff != fresh.so_linger->l_onoff || mine.l_linger != fresh.so_linger->l_linger)) {
      if (auto s = set(SOL_SOCKET, SO_LINGER, &mine, sizeof mine, "SO_LINGER"); !s) return std::move(s).error();
    }
  }
  if (family == AF_INET || family == AF_INET6) {
    const int level = family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
    const int name = family == AF_INET ? IP_TOS : IPV6_TCLASS;
    bool have = false;
    const int value = int_option(program, level, name, &have);
    if (have && fresh.tos && value != *fresh.tos) {
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
