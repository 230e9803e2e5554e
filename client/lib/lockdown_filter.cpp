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

// A condition on one syscall argument: (arg & mask) == value, or, for the
// one row that needs it, arg != value.
//
// Every equality is a masked equality on the low 32 bits, never a plain
// 64-bit one. The kernel truncates int parameters (level, optname, domain,
// protocol) to 32 bits, while seccomp sees the full 64-bit register. A 64-bit
// "== SOL_SOCKET" would let setsockopt(fd, 0x100000001, ...) through, and
// libseccomp 2.5.4's SCMP_CMP32/SCMP_A1_32 only truncate the datum: they still
// emit "$a1.hi32 == 0". A zero high-word mask makes libseccomp ignore the high
// word instead. The inequality is on all 64 bits: garbage in the high word
// only makes it refuse more.
struct ArgCondition {
  unsigned index = 0;
  std::uint32_t mask = 0;
  std::uint32_t value = 0;
  bool not_equal = false;
};

constexpr ArgCondition int_arg(unsigned index, int value) {
  return {index, 0xffffffffU, static_cast<std::uint32_t>(value), false};
}

// socket(2)'s type carries SOCK_CLOEXEC/SOCK_NONBLOCK above the type proper;
// comparing the whole word would let socket(AF_INET, SOCK_SEQPACKET|SOCK_CLOEXEC, 0)
// through.
constexpr std::uint32_t kSockTypeMask = 0xf;

constexpr ArgCondition socket_type_arg(unsigned index, int type) {
  return {index, kSockTypeMask, static_cast<std::uint32_t>(type), false};
}

// bind(2)'s address length is that of a sockaddr_nl for AF_NETLINK, which an
// IP socket refuses (sockaddr_in is 16 bytes, sockaddr_in6 24 at least).
constexpr std::uint32_t kNetlinkAddressLength = 12;
constexpr ArgCondition not_netlink_length(unsigned index) { return {index, 0, kNetlinkAddressLength, true}; }

// What a row does in each filter. `none`: the row is not in that filter.
enum class Act : std::uint8_t { none, deny, no_op, notify };

// One row: when all its conditions hold, `syscall` is refused with EPERM
// (deny), returns 0 without running (no_op), or goes to the supervisor
// (notify). Rows for the same syscall are alternatives.
struct Row {
  const char* what;  // names the row in error messages
  int syscall = 0;
  std::array<ArgCondition, 2> conditions{};
  unsigned condition_count = 0;
  Act unsupervised = Act::deny;
  Act supervised = Act::deny;
  Act supervisor = Act::deny;
  bool lifted_by_allow_listen = false;  // unsupervised only
};

constexpr Row row(const char* what, int nr) { return {what, nr, {}, 0}; }
constexpr Row row(const char* what, int nr, ArgCondition a) { return {what, nr, {a, {}}, 1}; }
constexpr Row row(const char* what, int nr, ArgCondition a, ArgCondition b) { return {what, nr, {a, b}, 2}; }
constexpr Row sockopt(const char* what, int level, int option) {
  return row(what, SCMP_SYS(setsockopt), int_arg(1, level), int_arg(2, option));
}
constexpr Row acting(Row r, Act unsupervised, Act supervised, Act supervisor) {
  r.unsupervised = unsupervised;
  r.supervised = supervised;
  r.supervisor = supervisor;
  return r;
}
constexpr Row unless_allow_listen(Row r) {
  r.lifted_by_allow_listen = true;
  return r;
}

constexpr Row kRows[] = {
    // bind(2). Supervised, every bind goes to the supervisor, which answers it
    // with a policy socket or EACCES (and binds AF_NETLINK sockets itself).
    // Otherwise only AF_NETLINK binds run: they open no port, and glibc's
    // getifaddrs and getaddrinfo(AI_ADDRCONFIG) need them. A filter cannot
    // read the family (it is in memory), only the length, which for an IP
    // socket is never sockaddr_nl's; an AF_UNIX name of up to 10 bytes
    // has that length too, which is why supervision does not use this row.
    acting(row("bind", SCMP_SYS(bind)), Act::none, Act::notify, Act::none),
    acting(row("bind(not AF_NETLINK)", SCMP_SYS(bind), not_netlink_length(2)), Act::deny, Act::none, Act::deny),
    // listen(2) on an unbound socket auto-binds an ephemeral port. Supervised,
    // the supervisor allows it on the sockets it granted.
    unless_allow_listen(acting(row("listen", SCMP_SYS(listen)), Act::deny, Act::notify, Act::deny)),

    // io_uring binds and listens (IORING_OP_BIND/LISTEN, Linux 6.11) without
    // ever entering bind(2) or listen(2).
    row("io_uring_setup", SCMP_SYS(io_uring_setup)),
    row("io_uring_enter", SCMP_SYS(io_uring_enter)),
    row("io_uring_register", SCMP_SYS(io_uring_register)),

    // SCTP binds through setsockopt (SCTP_SOCKOPT_BINDX_ADD) and sendmsg; an
    // inet SOCK_SEQPACKET with protocol 0 is SCTP too.
    row("socket(IPPROTO_SCTP)", SCMP_SYS(socket), int_arg(2, IPPROTO_SCTP)),
    row("socket(AF_INET, SOCK_SEQPACKET)", SCMP_SYS(socket), int_arg(0, AF_INET), socket_type_arg(1, SOCK_SEQPACKET)),
    row("socket(AF_INET6, SOCK_SEQPACKET)", SCMP_SYS(socket), int_arg(0, AF_INET6), socket_type_arg(1, SOCK_SEQPACKET)),

    // Taking a socket out of another process, or writing into one (a locked
    // down process could otherwise inject code into an unconfined one of its
    // uid). The supervisor takes the program's socket to look at it
    // (pidfd_getfd) and reads the address it passed to bind (process_vm_readv).
    row("ptrace", SCMP_SYS(ptrace)),
    acting(row("pidfd_getfd", SCMP_SYS(pidfd_getfd)), Act::deny, Act::deny, Act::none),
    acting(row("process_vm_readv", SCMP_SYS(process_vm_readv)), Act::deny, Act::deny, Act::none),
    row("process_vm_writev", SCMP_SYS(process_vm_writev)),

    // SO_REUSEADDR and SO_REUSEPORT succeed without effect: every server sets
    // them before it binds, and they cannot help a process that cannot bind.
    // Whether a socket is in a reuse_port group is the policy's to say: the
    // broker made it so, or not, when it bound it.
    acting(sockopt("setsockopt(SOL_SOCKET, SO_REUSEADDR)", SOL_SOCKET, SO_REUSEADDR), Act::no_op, Act::no_op,
           Act::no_op),
    acting(sockopt("setsockopt(SOL_SOCKET, SO_REUSEPORT)", SOL_SOCKET, SO_REUSEPORT), Act::no_op, Act::no_op,
           Act::no_op),
    // Options that bind to what the broker did not choose, or steer a group.
    sockopt("setsockopt(SOL_SOCKET, SO_BINDTODEVICE)", SOL_SOCKET, SO_BINDTODEVICE),
    sockopt("setsockopt(SOL_SOCKET, SO_BINDTOIFINDEX)", SOL_SOCKET, SO_BINDTOIFINDEX),
    // One member of a reuseport group would steer the whole group's traffic.
    sockopt("setsockopt(SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF)", SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF),
    sockopt("setsockopt(SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF)", SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF),
    sockopt("setsockopt(SOL_IP, IP_FREEBIND)", IPPROTO_IP, IP_FREEBIND),
    sockopt("setsockopt(SOL_IP, IP_TRANSPARENT)", IPPROTO_IP, IP_TRANSPARENT),
    sockopt("setsockopt(SOL_IPV6, IPV6_FREEBIND)", IPPROTO_IPV6, IPV6_FREEBIND),
    sockopt("setsockopt(SOL_IPV6, IPV6_TRANSPARENT)", IPPROTO_IPV6, IPV6_TRANSPARENT),
    sockopt("setsockopt(SOL_TCP, TCP_FASTOPEN)", IPPROTO_TCP, TCP_FASTOPEN),
};

Act act_in(const Row& r, Variant variant, bool allow_listen) {
  switch (variant) {
    case Variant::unsupervised:
      return r.lifted_by_allow_listen && allow_listen ? Act::none : r.unsupervised;
    case Variant::supervised: return r.supervised;
    case Variant::supervisor: return r.supervisor;
  }
  return Act::none;
}

Status add_row(const Filter& filter, const Row& r, Act act) {
  std::array<scmp_arg_cmp, 2> compares{};
  for (unsigned i = 0; i < r.condition_count; ++i) {
    const ArgCondition& c = r.conditions[i];
    compares[i] = c.not_equal ? scmp_arg_cmp{c.index, SCMP_CMP_NE, c.value, 0}
                              : scmp_arg_cmp{c.index, SCMP_CMP_MASKED_EQ, c.mask, c.value};
  }
  const std::uint32_t action = act == Act::notify  ? SCMP_ACT_NOTIFY
                               : act == Act::no_op ? SCMP_ACT_ERRNO(0)
                                                   : SCMP_ACT_ERRNO(EPERM);
  // Not the _exact variant: where the native ABI also reaches the socket calls
  // through socketcall(2) (i386, s390x), libseccomp then denies that form too,
  // coarser since socketcall hides the arguments, rather than leaving a way
  // around the row. On x86_64 both variants produce the same filter.
  int rc = seccomp_rule_add_array(filter.get(), action, r.syscall, r.condition_count, compares.data());
  if (rc != 0) return seccomp_error(std::string("seccomp_rule_add(") + r.what + ")", rc);
  return Ok{};
}

}  // namespace

Error seccomp_error(const std::string& step, int rc) {
  return errno_error("lockdown: " + step + " failed", rc < 0 ? -rc : EINVAL);
}

Result<Filter> build_filter(Variant variant, bool allow_listen) {
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

  for (const Row& r : kRows) {
    const Act act = act_in(r, variant, allow_listen);
    if (act == Act::none) continue;
    if (auto s = add_row(filter, r, act); !s) return std::move(s).error();
  }
  return filter;
}

Result<Filter> build_filter(const LockdownOptions& options) {
  return build_filter(Variant::unsupervised, options.allow_listen);
}

}  // namespace sockbroker::lockdown_filter
