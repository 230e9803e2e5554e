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
#include <linux/filter.h>
#include <linux/seccomp.h>
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
#include <span>
#include <string>

#include "lockdown_filter.hpp"
#include "lockdown_layers.hpp"

namespace sockbroker {
namespace {

// ---------------------------------------------------------------------------
// The seccomp layer, compiled at build time (tools/lockdown_bpf_gen.cpp)

#include "lockdown_bpf.inc"

// Older <linux/seccomp.h> than the kernel: values from the uapi header.
constexpr unsigned long kSeccompTsync = 1UL << 0;       // SECCOMP_FILTER_FLAG_TSYNC
constexpr unsigned long kSeccompTsyncEsrch = 1UL << 4;  // SECCOMP_FILTER_FLAG_TSYNC_ESRCH

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
  // The program libseccomp compiled from the table at build time
  // (lockdown_bpf.inc); loaded as seccomp_load would, minus the ~0.5 ms of
  // building it again in every process.
  const std::span<const sock_filter> program =
      options.allow_listen ? std::span<const sock_filter>(kLockdownAllowListenProgram)
                           : std::span<const sock_filter>(kLockdownProgram);
  sock_fprog fprog{static_cast<unsigned short>(program.size()), const_cast<sock_filter*>(program.data())};
  if (auto s = set_no_new_privs(); !s) return s;
  // TSYNC: every thread, or none (with TSYNC_ESRCH a thread that cannot take
  // the filter is an error, ESRCH, rather than its thread id as the result).
  long rc = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, kSeccompTsync | kSeccompTsyncEsrch, &fprog);
  if (rc != 0 && errno == EINVAL) {
    // TSYNC_ESRCH is Linux >= 5.7; before it a failed TSYNC returns a thread id.
    rc = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, kSeccompTsync, &fprog);
    if (rc > 0) return Error{SOCKBROKER_E_SYSTEM, ESRCH, "lockdown: thread " + std::to_string(rc) + " cannot take the seccomp filter (TSYNC)"};
  }
  if (rc != 0) return errno_error("lockdown: seccomp(SECCOMP_SET_MODE_FILTER, TSYNC) failed");
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
  auto filter = lockdown_filter::build_filter(options);
  if (!filter) return std::move(filter).error();

  // seccomp_export_pfc writes to a descriptor; a memfd keeps the text off disk.
  UniqueFd memory(::memfd_create("sockbroker-filter", MFD_CLOEXEC));
  if (!memory) return errno_error("lockdown: memfd_create failed");
  if (int rc = seccomp_export_pfc(filter->get(), memory.get()); rc != 0) {
    return lockdown_filter::seccomp_error("seccomp_export_pfc", rc);
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
