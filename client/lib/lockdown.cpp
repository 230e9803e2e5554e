// The client-side lockdown: after it, the process can use the sockets it holds
// (accept, read, write, connect, sendto) but can no longer obtain a listening
// address of its own by any route we know of. Two layers:
//
//   1. Landlock (ABI >= 4): LANDLOCK_ACCESS_NET_BIND_TCP handled, no port
//      allowed. It sits on the LSM bind hook, so it also covers paths that never
//      enter the bind(2) syscall (io_uring's IORING_OP_BIND).
//   2. seccomp: one declarative table (kDenials) of syscalls and argument
//      patterns refused with EPERM; everything else is allowed. A foreign-ABI
//      call kills the process, because i386 socketcall(2) hides its arguments
//      behind a pointer a filter cannot read, and x32 has its own numbers.
//
// NO_NEW_PRIVS comes first: it is what lets an unprivileged process install
// either layer. Landlock comes next, while no filter can get in its way. The
// seccomp layer is the one with TSYNC, so on kernels without Landlock TSYNC
// (ABI < 8) it alone covers the threads that existed before the lockdown.
#include <sockbroker/client.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "lockdown_layers.hpp"

namespace sockbroker {
namespace {

// ---------------------------------------------------------------------------
// The seccomp table

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

struct FilterRelease {
  void operator()(void* ctx) const noexcept { seccomp_release(ctx); }
};
using Filter = std::unique_ptr<void, FilterRelease>;

// libseccomp returns -errno; the message names the step that failed.
Error seccomp_error(const std::string& step, int rc) {
  return errno_error("lockdown: " + step + " failed", rc < 0 ? -rc : EINVAL);
}

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

// ---------------------------------------------------------------------------
// Landlock, by raw syscalls: Debian 12's <linux/landlock.h> predates the
// network fields.

#ifdef __NR_landlock_create_ruleset
constexpr long kSysLandlockCreateRuleset = __NR_landlock_create_ruleset;
constexpr long kSysLandlockRestrictSelf = __NR_landlock_restrict_self;
#else
constexpr long kSysLandlockCreateRuleset = 444;
constexpr long kSysLandlockRestrictSelf = 446;
#endif

constexpr std::uint32_t kLandlockCreateRulesetVersion = 1U << 0;
constexpr std::uint64_t kLandlockAccessNetBindTcp = 1ULL << 0;
constexpr std::uint32_t kLandlockRestrictSelfTsync = 1U << 3;
constexpr int kLandlockFirstNetAbi = 4;
constexpr int kLandlockFirstTsyncAbi = 8;

// The prefix of struct landlock_ruleset_attr we use; the kernel accepts a
// shorter struct than its own and treats the missing fields as zero.
struct LandlockRulesetAttr {
  std::uint64_t handled_access_fs;
  std::uint64_t handled_access_net;
};
static_assert(sizeof(LandlockRulesetAttr) == 16);

}  // namespace

namespace lockdown_layers {

Status set_no_new_privs() {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno_error("lockdown: prctl(PR_SET_NO_NEW_PRIVS) failed");
  return Ok{};
}

Result<int> landlock_abi_version() {
  long abi = ::syscall(kSysLandlockCreateRuleset, nullptr, 0, kLandlockCreateRulesetVersion);
  if (abi >= 0) return static_cast<int>(abi);
  // Not built in (ENOSYS) or not enabled at boot (EOPNOTSUPP).
  if (errno == ENOSYS || errno == EOPNOTSUPP) return 0;
  return errno_error("lockdown: landlock_create_ruleset(LANDLOCK_CREATE_RULESET_VERSION) failed");
}

Status apply_landlock_net() {
  auto abi = landlock_abi_version();
  if (!abi) return std::move(abi).error();
  if (*abi < kLandlockFirstNetAbi) return Ok{};  // the seccomp layer still refuses bind(2)

  if (auto s = set_no_new_privs(); !s) return s;

  // Nothing but BIND_TCP is handled, so files, connect(2) and UDP stay as they were.
  const LandlockRulesetAttr attr{0, kLandlockAccessNetBindTcp};
  UniqueFd ruleset(static_cast<int>(::syscall(kSysLandlockCreateRuleset, &attr, sizeof attr, 0U)));
  if (!ruleset) return errno_error("lockdown: landlock_create_ruleset(BIND_TCP) failed");

  // Before ABI 8 the domain reaches only this thread and what it creates from
  // now on (including the program `sockbroker run` execs); older threads are
  // covered by the seccomp layer, which is TSYNC.
  const std::uint32_t flags = *abi >= kLandlockFirstTsyncAbi ? kLandlockRestrictSelfTsync : 0U;
  if (::syscall(kSysLandlockRestrictSelf, ruleset.get(), flags) != 0) {
    return errno_error("lockdown: landlock_restrict_self failed");
  }
  return Ok{};
}

Status apply_seccomp(const LockdownOptions& options) {
  auto filter = build_filter(options);
  if (!filter) return std::move(filter).error();
  if (int rc = seccomp_load(filter->get()); rc != 0) return seccomp_error("seccomp_load", rc);
  return Ok{};
}

}  // namespace lockdown_layers

Status lockdown(const LockdownOptions& options) {
  // A failure part-way leaves the earlier layers in place (they cannot be
  // undone); the caller must treat any error as "do not run the service".
  if (auto s = lockdown_layers::set_no_new_privs(); !s) return s;
  if (auto s = lockdown_layers::apply_landlock_net(); !s) return s;
  return lockdown_layers::apply_seccomp(options);
}

Result<std::string> lockdown_filter_text(const LockdownOptions& options) {
  auto filter = build_filter(options);
  if (!filter) return std::move(filter).error();

  // seccomp_export_pfc writes to a descriptor; a memfd keeps the text off disk.
  UniqueFd memory(::memfd_create("sockbroker-filter", MFD_CLOEXEC));
  if (!memory) return errno_error("lockdown: memfd_create failed");
  if (int rc = seccomp_export_pfc(filter->get(), memory.get()); rc != 0) {
    return seccomp_error("seccomp_export_pfc", rc);
  }

  std::string text;
  std::array<char, 4096> buffer{};
  for (off_t offset = 0;;) {
    ssize_t n = ::pread(memory.get(), buffer.data(), buffer.size(), offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("lockdown: reading the exported filter failed");
    }
    if (n == 0) break;
    text.append(buffer.data(), static_cast<std::size_t>(n));
    offset += n;
  }
  return text;
}

}  // namespace sockbroker
