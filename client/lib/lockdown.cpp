// The client-side lockdown: after it, the process can use the sockets it holds
// (accept, read, write, connect, sendto) but can no longer obtain a listening
// address of its own by any route we know of, nor reach into another process
// of its uid that is not locked down with it. Two layers:
//
//   1. Landlock. With network rules (ABI >= 4): LANDLOCK_ACCESS_NET_BIND_TCP
//      handled, no port allowed. It sits on the LSM bind hook, so it also
//      covers paths that never enter the bind(2) syscall (io_uring's
//      IORING_OP_BIND). On ABI 2 and 3, a domain that restricts nothing a
//      service does (below), for what every Landlock domain brings: the
//      process can no longer ptrace-access (open /proc/PID/mem,
//      process_vm_writev, pidfd_getfd, ...) a process outside its domain.
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

#include <fcntl.h>
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
#include <optional>
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
constexpr unsigned long kSeccompTsync = 1UL << 0;            // SECCOMP_FILTER_FLAG_TSYNC
constexpr unsigned long kSeccompNewListener = 1UL << 3;      // SECCOMP_FILTER_FLAG_NEW_LISTENER
constexpr unsigned long kSeccompTsyncEsrch = 1UL << 4;       // SECCOMP_FILTER_FLAG_TSYNC_ESRCH
constexpr unsigned long kSeccompWaitKillableRecv = 1UL << 5;  // SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV

// Loads `program` on every thread: every thread or none (with TSYNC_ESRCH a
// thread that cannot take the filter is an error, ESRCH, rather than its
// thread id as the result; TSYNC_ESRCH is also what lets TSYNC and
// NEW_LISTENER go together). Returns what seccomp(2) returned: 0, or the
// listener's descriptor with NEW_LISTENER.
Result<long> load_program(std::span<const sock_filter> program, unsigned long extra_flags) {
  sock_fprog fprog{static_cast<unsigned short>(program.size()), const_cast<sock_filter*>(program.data())};
  long rc = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, kSeccompTsync | kSeccompTsyncEsrch | extra_flags, &fprog);
  if (rc < 0 && errno == EINVAL && (extra_flags & kSeccompWaitKillableRecv) != 0) {
    // Before Linux 5.19: a signal may interrupt the wait (the call restarts).
    return load_program(program, extra_flags & ~kSeccompWaitKillableRecv);
  }
  if (rc < 0 && errno == EINVAL && extra_flags == 0) {
    // TSYNC_ESRCH is Linux >= 5.7; before it a failed TSYNC returns a thread id.
    rc = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, kSeccompTsync, &fprog);
    if (rc > 0) {
      return Error{SOCKBROKER_E_SYSTEM, ESRCH, "lockdown: thread " + std::to_string(rc) + " cannot take the seccomp filter (TSYNC)"};
    }
  }
  if (rc < 0) return errno_error("lockdown: seccomp(SECCOMP_SET_MODE_FILTER, TSYNC) failed");
  return rc;
}

// ---------------------------------------------------------------------------
// Landlock, by raw syscalls: Debian 12's <linux/landlock.h> predates the
// network fields.

#ifdef __NR_landlock_create_ruleset
constexpr long kSysLandlockCreateRuleset = __NR_landlock_create_ruleset;
constexpr long kSysLandlockAddRule = __NR_landlock_add_rule;
constexpr long kSysLandlockRestrictSelf = __NR_landlock_restrict_self;
#else
constexpr long kSysLandlockCreateRuleset = 444;
constexpr long kSysLandlockAddRule = 445;
constexpr long kSysLandlockRestrictSelf = 446;
#endif

constexpr std::uint32_t kLandlockCreateRulesetVersion = 1U << 0;
constexpr std::uint64_t kLandlockAccessNetBindTcp = 1ULL << 0;
constexpr std::uint64_t kLandlockAccessFsRefer = 1ULL << 13;
constexpr int kLandlockRulePathBeneath = 1;  // LANDLOCK_RULE_PATH_BENEATH
constexpr std::uint32_t kLandlockRestrictSelfTsync = 1U << 3;
constexpr int kLandlockFirstReferAbi = 2;
constexpr int kLandlockFirstNetAbi = 4;
constexpr int kLandlockFirstTsyncAbi = 8;

// The prefix of struct landlock_ruleset_attr we use; the kernel accepts a
// shorter struct than its own and treats the missing fields as zero.
struct LandlockRulesetAttr {
  std::uint64_t handled_access_fs;
  std::uint64_t handled_access_net;
};
static_assert(sizeof(LandlockRulesetAttr) == 16);

// struct landlock_path_beneath_attr, packed as the uapi header declares it.
struct __attribute__((packed)) LandlockPathBeneathAttr {
  std::uint64_t allowed_access;
  std::int32_t parent_fd;
};
static_assert(sizeof(LandlockPathBeneathAttr) == 12);

// The ruleset the lockdown wants from a kernel of Landlock ABI `abi`, filled
// in; nullopt (and `why`) when that kernel has none that fits.
//
// Any Landlock domain, whatever its rules, also scopes the kernel's ptrace
// access check (every PTRACE_MODE_ATTACH and _READ: opening /proc/PID/mem for
// writing, process_vm_readv/writev, pidfd_getfd, /proc/PID/environ, ...): a
// target outside the caller's domain, or a domain nested in it, is refused.
// That is the only thing that keeps a locked-down process from writing into
// an unconfined process of its uid through /proc/PID/mem, which seccomp cannot
// see (the path is in memory). So without network rules a domain is still
// worth having, if one can be had that restricts nothing a service does. Landlock is an allow-list over the access
// rights a ruleset handles, so a ruleset must handle at least one, and one
// that handles any filesystem right also refuses to move a file between
// directories (link, rename) unless LANDLOCK_ACCESS_FS_REFER is granted
// there. Handling REFER alone and granting it beneath "/" leaves every
// operation on everything reachable from the root as it was; ABI 2 is the
// first that has REFER. On ABI 1 any domain would make every cross-directory
// rename fail with EXDEV (Maildir delivery, caches that rename a finished
// temporary file into place), which is worse than the gap it closes.
//
// What such a domain still changes: a path under no directory of this mount
// tree (a file reached through another mount namespace, /proc/PID/root, or a
// bind mount whose source was moved away) cannot be renamed into another
// directory, and the process can no longer mount or unmount (which an
// unprivileged service cannot anyway, outside a user namespace of its own).
std::optional<LandlockRulesetAttr> ruleset_for(int abi, std::string* why) {
  if (abi >= kLandlockFirstNetAbi) return LandlockRulesetAttr{0, kLandlockAccessNetBindTcp};
  if (abi >= kLandlockFirstReferAbi) return LandlockRulesetAttr{kLandlockAccessFsRefer, 0};
  *why = "the kernel's Landlock (ABI " + std::to_string(abi) +
         ") has no network rules (ABI 4) and no way to leave renames between directories alone (ABI 2)";
  return std::nullopt;
}

std::string no_layer(const std::string& why) {
  return "no Landlock layer (" + why +
         "): the seccomp layer alone refuses binds, and the program can still open /proc/PID/mem of a process "
         "of its uid";
}

}  // namespace

namespace lockdown_layers {

Status set_no_new_privs() {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno_error("lockdown: prctl(PR_SET_NO_NEW_PRIVS) failed");
  return Ok{};
}

Result<int> landlock_abi_version(std::string* why) {
  long abi = ::syscall(kSysLandlockCreateRuleset, nullptr, 0, kLandlockCreateRulesetVersion);
  if (abi >= 0) return static_cast<int>(abi);
  const int err = errno;
  // Not built in (ENOSYS), not enabled at boot (EOPNOTSUPP), or refused by the
  // seccomp profile of the container we run in (EPERM): unusable alike.
  if (err == ENOSYS || err == EOPNOTSUPP || err == EPERM) {
    if (why != nullptr) {
      *why = err == EPERM ? "the container's seccomp profile refuses the Landlock system calls"
             : err == ENOSYS ? "the kernel has no Landlock"
                             : "Landlock is not enabled at boot (lsm=)";
    }
    return 0;
  }
  return errno_error("lockdown: landlock_create_ruleset(LANDLOCK_CREATE_RULESET_VERSION) failed", err);
}

Result<LandlockOutcome> apply_landlock() {
  std::string why;
  auto abi = landlock_abi_version(&why);
  if (!abi) return std::move(abi).error();
  if (*abi == 0) return LandlockOutcome{false, false, no_layer(why)};
  return apply_landlock_for_abi(*abi);
}

Result<LandlockOutcome> apply_landlock_for_abi(int abi) {
  std::string why;
  const auto attr = ruleset_for(abi, &why);
  if (!attr) return LandlockOutcome{false, false, no_layer(why)};

  if (auto s = set_no_new_privs(); !s) return std::move(s).error();

  UniqueFd ruleset(static_cast<int>(::syscall(kSysLandlockCreateRuleset, &*attr, sizeof *attr, 0U)));
  if (!ruleset) return errno_error("lockdown: landlock_create_ruleset failed");
  if (attr->handled_access_fs != 0) {
    // REFER everywhere beneath the root: the one right the ruleset handles,
    // granted wherever a path can be walked to (ruleset_for says why).
    UniqueFd root(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root) return errno_error("lockdown: open(\"/\", O_PATH) for the Landlock rule failed");
    const LandlockPathBeneathAttr beneath{kLandlockAccessFsRefer, root.get()};
    if (::syscall(kSysLandlockAddRule, ruleset.get(), kLandlockRulePathBeneath, &beneath, 0U) != 0) {
      return errno_error("lockdown: landlock_add_rule(\"/\", REFER) failed");
    }
  }

  // Before ABI 8 the domain reaches only this thread and what it creates from
  // now on (including the program `sockbroker run` execs); older threads are
  // covered by the seccomp layer, which is TSYNC.
  const std::uint32_t flags = abi >= kLandlockFirstTsyncAbi ? kLandlockRestrictSelfTsync : 0U;
  if (::syscall(kSysLandlockRestrictSelf, ruleset.get(), flags) != 0) {
    return errno_error("lockdown: landlock_restrict_self failed");
  }
  const bool binds = attr->handled_access_net != 0;
  return LandlockOutcome{true, binds,
                         binds ? std::string()
                               : "the kernel's Landlock (ABI " + std::to_string(abi) +
                                     ") has no network rules (ABI 4): the seccomp layer alone refuses binds"};
}

Status apply_seccomp(const LockdownOptions& options) {
  // The program libseccomp compiled from the table at build time
  // (lockdown_bpf.inc); loaded as seccomp_load would, without building it
  // again in every process.
  const std::span<const sock_filter> program =
      options.allow_listen ? std::span<const sock_filter>(kLockdownAllowListenProgram)
                           : std::span<const sock_filter>(kLockdownProgram);
  if (auto s = set_no_new_privs(); !s) return s;
  auto loaded = load_program(program, 0);
  if (!loaded) return std::move(loaded).error();
  return Ok{};
}

Result<UniqueFd> apply_supervised_seccomp() {
  if (auto s = set_no_new_privs(); !s) return std::move(s).error();
  auto loaded = load_program(kSupervisedProgram, kSeccompNewListener | kSeccompWaitKillableRecv);
  if (!loaded) return std::move(loaded).error();
  return UniqueFd(static_cast<int>(*loaded));
}

Status apply_supervisor_seccomp() {
  if (auto s = set_no_new_privs(); !s) return s;
  auto loaded = load_program(kSupervisorProgram, 0);
  if (!loaded) return std::move(loaded).error();
  return Ok{};
}

}  // namespace lockdown_layers

Status lockdown(const LockdownOptions& options) {
  // A failure part-way leaves the earlier layers in place (they cannot be
  // undone); the caller must treat any error as "do not run the service".
  if (auto s = lockdown_layers::set_no_new_privs(); !s) return s;
  if (auto landlock = lockdown_layers::apply_landlock(); !landlock) return std::move(landlock).error();
  return lockdown_layers::apply_seccomp(options);
}

Result<std::string> lockdown_filter_text(const LockdownOptions& options) {
  return lockdown_filter::filter_text(lockdown_filter::Variant::unsupervised, options.allow_listen);
}

namespace lockdown_filter {

Result<std::string> filter_text(Variant variant, bool allow_listen) {
  auto filter = build_filter(variant, allow_listen);
  if (!filter) return std::move(filter).error();

  // seccomp_export_pfc writes to a descriptor; a memfd keeps the text off disk.
  UniqueFd memory(::memfd_create("sockbroker-filter", MFD_CLOEXEC));
  if (!memory) return errno_error("lockdown: memfd_create failed");
  if (int rc = seccomp_export_pfc(filter->get(), memory.get()); rc != 0) return seccomp_error("seccomp_export_pfc", rc);

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

}  // namespace lockdown_filter

}  // namespace sockbroker
