// The lockdown's seccomp table (lockdown_filter.hpp says who uses it).
#include "lockdown_filter.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <string>

namespace sockbroker::lockdown_filter {
namespace {

// A condition on one syscall argument: (arg & mask) == value.
//
// Every comparison is a masked equality on the low 32 bits, never a plain
// 64-bit one. The kernel truncates int parameters (level, optname, domain,
// protocol) to 32 bits, while seccomp sees the full 64-bit register. A 64-bit
// "== SOL_SOCKET" would let setsockopt(fd, 0x100000001, ...) through, and
// libseccomp 2.5.4's SCMP_CMP32/SCMP_A1_32 only truncate the datum: they still
// emit "$a1.hi32 == 0". A zero high-word mask makes libseccomp ignore the high
// word instead.
struct ArgCondition {
  unsigned index = 0;
  std::uint32_t mask = 0;
  std::uint32_t value = 0;
};

constexpr ArgCondition int_arg(unsigned index, int value) {
  return {index, 0xffffffffU, static_cast<std::uint32_t>(value)};
}

// socket(2)'s type carries SOCK_CLOEXEC/SOCK_NONBLOCK above the type proper;
// comparing the whole word would let socket(AF_INET, SOCK_SEQPACKET|SOCK_CLOEXEC, 0)
// through.
constexpr std::uint32_t kSockTypeMask = 0xf;

constexpr ArgCondition socket_type_arg(unsigned index, int type) {
  return {index, kSockTypeMask, static_cast<std::uint32_t>(type)};
}

// One row: refuse `syscall` with EPERM when all its conditions hold. Rows for
// the same syscall are alternatives.
struct Denial {
  const char* what;  // names the row in error messages
  int syscall = 0;
  std::array<ArgCondition, 2> conditions{};
  unsigned condition_count = 0;
  bool lifted_by_allow_listen = false;
};

constexpr Denial deny(const char* what, int nr) { return {what, nr, {}, 0, false}; }
constexpr Denial deny(const char* what, int nr, ArgCondition a) { return {what, nr, {a, {}}, 1, false}; }
constexpr Denial deny(const char* what, int nr, ArgCondition a, ArgCondition b) {
  return {what, nr, {a, b}, 2, false};
}
constexpr Denial deny_sockopt(const char* what, int level, int option) {
  return deny(what, SCMP_SYS(setsockopt), int_arg(1, level), int_arg(2, option));
}
constexpr Denial unless_allow_listen(Denial row) {
  row.lifted_by_allow_listen = true;
  return row;
}

constexpr Denial kDenials[] = {
    deny("bind", SCMP_SYS(bind)),
    // listen(2) on an unbound socket auto-binds an ephemeral port.
    unless_allow_listen(deny("listen", SCMP_SYS(listen))),

    // io_uring binds and listens (IORING_OP_BIND/LISTEN, Linux 6.11) without
    // ever entering bind(2) or listen(2).
    deny("io_uring_setup", SCMP_SYS(io_uring_setup)),
    deny("io_uring_enter", SCMP_SYS(io_uring_enter)),
    deny("io_uring_register", SCMP_SYS(io_uring_register)),

    // SCTP binds through setsockopt (SCTP_SOCKOPT_BINDX_ADD) and sendmsg; an
    // inet SOCK_SEQPACKET with protocol 0 is SCTP too.
    deny("socket(IPPROTO_SCTP)", SCMP_SYS(socket), int_arg(2, IPPROTO_SCTP)),
    deny("socket(AF_INET, SOCK_SEQPACKET)", SCMP_SYS(socket), int_arg(0, AF_INET),
         socket_type_arg(1, SOCK_SEQPACKET)),
    deny("socket(AF_INET6, SOCK_SEQPACKET)", SCMP_SYS(socket), int_arg(0, AF_INET6),
         socket_type_arg(1, SOCK_SEQPACKET)),

    // Taking a socket out of another process.
    deny("ptrace", SCMP_SYS(ptrace)),
    deny("pidfd_getfd", SCMP_SYS(pidfd_getfd)),

    // Options that join or steer a port group, or bind to what the broker did
    // not choose.
    deny_sockopt("setsockopt(SOL_SOCKET, SO_REUSEPORT)", SOL_SOCKET, SO_REUSEPORT),
    deny_sockopt("setsockopt(SOL_SOCKET, SO_REUSEADDR)", SOL_SOCKET, SO_REUSEADDR),
    deny_sockopt("setsockopt(SOL_SOCKET, SO_BINDTODEVICE)", SOL_SOCKET, SO_BINDTODEVICE),
    deny_sockopt("setsockopt(SOL_SOCKET, SO_BINDTOIFINDEX)", SOL_SOCKET, SO_BINDTOIFINDEX),
    // One member of a reuseport group would steer the whole group's traffic.
    deny_sockopt("setsockopt(SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF)", SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF),
    deny_sockopt("setsockopt(SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF)", SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF),
    deny_sockopt("setsockopt(SOL_IP, IP_FREEBIND)", IPPROTO_IP, IP_FREEBIND),
    deny_sockopt("setsockopt(SOL_IP, IP_TRANSPARENT)", IPPROTO_IP, IP_TRANSPARENT),
    deny_sockopt("setsockopt(SOL_IPV6, IPV6_FREEBIND)", IPPROTO_IPV6, IPV6_FREEBIND),
    deny_sockopt("setsockopt(SOL_IPV6, IPV6_TRANSPARENT)", IPPROTO_IPV6, IPV6_TRANSPARENT),
    deny_sockopt("setsockopt(SOL_TCP, TCP_FASTOPEN)", IPPROTO_TCP, TCP_FASTOPEN),
};

Status add_denial(const Filter& filter, const Denial& row) {
  std::array<scmp_arg_cmp, 2> compares{};
  for (unsigned i = 0; i < row.condition_count; ++i) {
    const ArgCondition& c = row.conditions[i];
    compares[i] = scmp_arg_cmp{c.index, SCMP_CMP_MASKED_EQ, c.mask, c.value};
  }
  // Not the _exact variant: where the native ABI also reaches the socket calls
  // through socketcall(2) (i386, s390x), libseccomp then denies that form too,
  // coarser since socketcall hides the arguments, rather than leaving a way
  // around the row. On x86_64 both variants produce the same filter.
  int rc = seccomp_rule_add_array(filter.get(), SCMP_ACT_ERRNO(EPERM), row.syscall, row.condition_count,
                                  compares.data());
  if (rc != 0) return seccomp_error(std::string("seccomp_rule_add(") + row.what + ")", rc);
  return Ok{};
}

}  // namespace

Error seccomp_error(const std::string& step, int rc) {
  return errno_error("lockdown: " + step + " failed", rc < 0 ? -rc : EINVAL);
}

Result<Filter> build_filter(const LockdownOptions& options) {
  Filter filter(seccomp_init(SCMP_ACT_ALLOW));
  if (!filter) return errno_error("lockdown: seccomp_init failed", ENOMEM);

  struct Attribute {
    const char* what;
    scmp_filter_attr attr;
    std::uint32_t value;
  };
  const Attribute attributes[] = {
      // Only the native ABI is in the filter; libseccomp sends every other
      // architecture, and x32 numbers (nr & 0x40000000) on an x86_64 filter,
      // to this action.
      {"seccomp_attr_set(ACT_BADARCH, KILL_PROCESS)", SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS},
      {"seccomp_attr_set(CTL_NNP)", SCMP_FLTATR_CTL_NNP, 1},
      {"seccomp_attr_set(CTL_TSYNC)", SCMP_FLTATR_CTL_TSYNC, 1},
      // Without it seccomp_load reports every kernel refusal as -ECANCELED.
      {"seccomp_attr_set(API_SYSRAWRC)", SCMP_FLTATR_API_SYSRAWRC, 1},
  };
  for (const Attribute& a : attributes) {
    if (int rc = seccomp_attr_set(filter.get(), a.attr, a.value); rc != 0) return seccomp_error(a.what, rc);
  }

  for (const Denial& row : kDenials) {
    if (row.lifted_by_allow_listen && options.allow_listen) continue;
    if (auto s = add_denial(filter, row); !s) return std::move(s).error();
  }
  return filter;
}

}  // namespace sockbroker::lockdown_filter
