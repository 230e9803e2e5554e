// How the broker confines itself after start-up. Three layers, in this order:
//
//  1. Capabilities: only those the start-up policy needs (capabilities_needed).
//     Measured on Linux 6.18 with every capability dropped:
//       SO_BINDTODEVICE on a fresh socket, IP_FREEBIND, IPV6_FREEBIND,
//       TCP_FASTOPEN, SO_REUSEPORT   need none (SO_BINDTODEVICE has needed
//                                    none since Linux 5.7 unless it re-binds)
//       IP_TRANSPARENT, IPV6_TRANSPARENT   CAP_NET_ADMIN (or CAP_NET_RAW)
//       readlink /proc/PID/exe of another uid   CAP_SYS_PTRACE (ptrace_may_access):
//                                    without it the caller's executable stays
//                                    unknown, `executable` rules fail closed and
//                                    audit events show "exe": null
//       open /proc/PID/cgroup (unit, cgroup)   none (mode 0444, no ptrace check)
//       open /proc/PID/status (the caller's ids, where the kernel has no
//                                    SO_PEERPIDFD)   none (mode 0444)
//       poll of a caller's pidfd (is it still the process that connected?)
//                                    none (pidfd_send_signal(pidfd, 0) would
//                                    want CAP_KILL for another uid)
//     CAP_DAC_OVERRIDE is kept only for a Unix socket file root could not
//     otherwise write (see socket_needs). Without it the broker, as uid 0,
//     still reads and writes what root owns through the owner bits, but not
//     directories other users own: Unix socket paths go in root-owned
//     directories (which is where they belong: a directory another user can
//     write lets that user race the broker's rename).
//  2. PR_SET_NO_NEW_PRIVS.
//  3. A seccomp allow-list: kSyscalls below, the one table to review.
#include "confinement.hpp"

#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/nsfs.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grp.h>
#include <pwd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "pidfd_info.hpp"

// Older kernel headers than the kernel: system calls added since Linux 5.1
// have one number on every architecture but alpha
// (include/uapi/asm-generic/unistd.h).
#ifndef __NR_fchmodat2
#define __NR_fchmodat2 452
#endif

namespace sockbroker::broker {
namespace {

// ---------------------------------------------------------------------------
// Capabilities

// Whether uid 0 without CAP_DAC_OVERRIDE may write the socket file the policy
// describes: the kernel reads the owner bits if it owns the file, else the
// group bits if it is in the group (gid 0 only, as started), else the others.
bool root_can_write(const policy::SocketSpec& spec) {
  const mode_t mode = spec.socket_mode.value_or(0666);  // unix_socket_path.cpp's default
  if (spec.socket_user.value_or(0) == 0) return (mode & S_IWUSR) != 0;
  if (spec.socket_group.value_or(0) == 0) return (mode & S_IWGRP) != 0;
  return (mode & S_IWOTH) != 0;
}

// What one socket (with its rules) needs. The order is the order of the log line.
std::vector<CapabilityNeed> socket_needs(const policy::SocketSpec& spec) {
  std::vector<CapabilityNeed> out;
  const std::string name = "socket \"" + spec.name + "\": ";
  if (spec.transparent) out.push_back({CAP_NET_ADMIN, name + "transparent"});
  if (spec.listen.kind == policy::Address::Kind::unix_path) {
    // chown to socket_user/socket_group, then chmod a file root may no longer
    // own; also a rename over a stale socket of another user in a sticky directory.
    out.push_back({CAP_CHOWN, name + "Unix socket path"});
    out.push_back({CAP_FOWNER, name + "Unix socket path"});
    // Before replacing a socket file (its own, at revoke or rebind) the broker
    // connects to it to see whether anyone still listens, and refuses to
    // replace one it cannot probe. connect(2) wants write permission on the
    // file: when owner, group and mode leave root none, only this gets it.
    if (!root_can_write(spec)) out.push_back({CAP_DAC_OVERRIDE, name + "socket file root cannot write (stale probe)"});
  }
  if (spec.netns == policy::NetnsMode::request) out.push_back({CAP_SYS_ADMIN, name + "netns = \"request\" (setns)"});
  for (const auto& rule : spec.allow) {
    if (rule.executable) out.push_back({CAP_SYS_PTRACE, name + "executable rule (reads /proc/PID/exe)"});
  }
  return out;
}

void add_unique(std::vector<CapabilityNeed>& into, CapabilityNeed need) {
  auto same = [&](const CapabilityNeed& n) { return n.capability == need.capability; };
  if (std::none_of(into.begin(), into.end(), same)) into.push_back(std::move(need));
}

std::string capability_name(int capability) {
  char* raw = ::cap_to_name(static_cast<cap_value_t>(capability));
  if (raw == nullptr) return "capability " + std::to_string(capability);
  std::string name(raw);
  ::cap_free(raw);
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return name;
}

struct CapFree {
  void operator()(cap_t caps) const noexcept { ::cap_free(caps); }
};
using UniqueCaps = std::unique_ptr<std::remove_pointer_t<cap_t>, CapFree>;

bool has(cap_t caps, int capability, cap_flag_t set) {
  cap_flag_value_t value = CAP_CLEAR;
  return ::cap_get_flag(caps, static_cast<cap_value_t>(capability), set, &value) == 0 && value == CAP_SET;
}

std::string joined_names(const std::vector<int>& capabilities) {
  std::string out;
  for (int c : capabilities) out += (out.empty() ? "" : ", ") + capability_name(c);
  return out.empty() ? "none" : out;
}

// The process must be single-threaded: capability sets are per thread, so a
// thread started earlier would keep everything.
Status check_single_threaded() {
  std::error_code ec;
  std::size_t threads = 0;
  for (std::filesystem::directory_iterator it("/proc/self/task", ec); !ec && it != std::filesystem::directory_iterator();
       it.increment(ec)) {
    ++threads;
  }
  if (ec) return errno_error("cannot list /proc/self/task", ec.value());
  if (threads != 1) return Error{0, 0, "the broker has " + std::to_string(threads) + " threads; confinement needs one"};
  return Ok{};
}

// True when the bounding set is down to `keep` (see When::upgradable).
Result<bool> drop_capabilities(const std::vector<int>& keep, spdlog::logger& log) {
  UniqueCaps current(::cap_get_proc());
  if (!current) return errno_error("cap_get_proc");

  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return errno_error("prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
  }

  // The bounding set first: dropping from it takes CAP_SETPCAP, which the
  // cap_set_proc below gives up. Without CAP_SETPCAP (a unit whose
  // CapabilityBoundingSet= lacks it) the set stays as given; that is only
  // what an execve could regain, and the filter kills execve (and execveat:
  // no upgrade in place then).
  std::vector<int> left_in_bound;
  const bool can_drop_bound = has(current.get(), CAP_SETPCAP, CAP_EFFECTIVE);
  for (int c = 0; c < static_cast<int>(::cap_max_bits()); ++c) {
    if (std::find(keep.begin(), keep.end(), c) != keep.end()) continue;
    if (::cap_get_bound(static_cast<cap_value_t>(c)) != 1) continue;  // absent, or unknown to the kernel
    if (!can_drop_bound) {
      left_in_bound.push_back(c);
      continue;
    }
    if (::cap_drop_bound(static_cast<cap_value_t>(c)) != 0) {
      return errno_error("prctl(PR_CAPBSET_DROP, " + capability_name(c) + ")");
    }
  }
  if (!left_in_bound.empty()) {
    log.info("confinement: without CAP_SETPCAP the bounding set keeps {}; permitted and effective sets are narrowed",
             joined_names(left_in_bound));
  }

  // Permitted and effective: what we keep and have. Inheritable: nothing.
  std::vector<cap_value_t> kept;
  std::vector<int> lacking;
  for (int c : keep) {
    if (has(current.get(), c, CAP_PERMITTED)) {
      kept.push_back(static_cast<cap_value_t>(c));
    } else {
      lacking.push_back(c);
    }
  }
  if (!lacking.empty()) {
    // Not fatal: what needs it fails (and says so) where it is used.
    log.warn("confinement: the policy needs {} but the broker was started without it", joined_names(lacking));
  }
  UniqueCaps next(::cap_init());
  if (!next) return errno_error("cap_init");
  if (!kept.empty() && (::cap_set_flag(next.get(), CAP_PERMITTED, static_cast<int>(kept.size()), kept.data(), CAP_SET) != 0 ||
                        ::cap_set_flag(next.get(), CAP_EFFECTIVE, static_cast<int>(kept.size()), kept.data(), CAP_SET) != 0)) {
    return errno_error("cap_set_flag");
  }
  if (::cap_set_proc(next.get()) != 0) return errno_error("cap_set_proc");
  return left_in_bound.empty();
}

// ---------------------------------------------------------------------------
// The seccomp allow-list
//
// Default for a native system call not in the table: ERRNO(EPERM), logged by
// the kernel (SECCOMP_FILTER_FLAG_LOG: an audit record naming the call). Why
// not KILL_PROCESS: the broker holds every policy port and must stay up
// (DESIGN.md, threat model); a call the table misses comes from a library path
// the tests cannot exercise on this host (another NSS backend such as sss or
// ldap, a newer glibc choosing another call), and every such caller already
// handles a failing call as an error it reports.
// EPERM turns a missing row into one failed operation and a log line instead
// of a dead broker. Calls that serve no purpose in the broker but are what
// an attacker running code in it wants next (exec, reading or writing other
// processes, loading kernel code, mounting, changing uid) are listed with
// `kill` so that trying them ends the process at once.
//
// Foreign ABIs (i386 via int 0x80, x32) are killed by the BADARCH action: the
// table is written for the native ABI only.

enum class Action { allow, kill };
// Rows that only some policies need, and rows for sanitizer builds
// (SOCKBROKER_SANITIZE): their runtime makes calls of its own (a pipe to probe
// memory, a ptrace-ing thread for the leak check at exit).
// upgradable: the bounding set holds only what the broker keeps, so an
// execve (an upgrade in place) regains nothing; otherwise execveat is killed
// like execve.
enum class When { always, netns_request, sanitized, unsanitized, upgradable, not_upgradable };

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

struct Row {
  int syscall;  // SCMP_SYS(name)
  Action action;
  When when;
  std::array<scmp_arg_cmp, 2> args;  // compared only up to `argc`
  unsigned argc;
  const char* why;
};

// (arg & mask) == value
constexpr scmp_arg_cmp masked(unsigned arg, std::uint64_t mask, std::uint64_t value) {
  return {arg, SCMP_CMP_MASKED_EQ, mask, value};
}
// Every argument compared here is an int (or unsigned int) to the kernel,
// which ignores the upper half of the register: so does the filter, else
// garbage there would pass for another value than the kernel sees.
constexpr scmp_arg_cmp eq(unsigned arg, std::uint64_t value) { return masked(arg, 0xffffffffu, value); }
constexpr scmp_arg_cmp kNoArg{};

constexpr Row allow(int nr, const char* why) { return {nr, Action::allow, When::always, {kNoArg, kNoArg}, 0, why}; }
constexpr Row allow_if(int nr, scmp_arg_cmp a, const char* why) { return {nr, Action::allow, When::always, {a, kNoArg}, 1, why}; }
constexpr Row allow_if(int nr, scmp_arg_cmp a, scmp_arg_cmp b, const char* why) {
  return {nr, Action::allow, When::always, {a, b}, 2, why};
}
constexpr Row never(int nr, const char* why) { return {nr, Action::kill, When::always, {kNoArg, kNoArg}, 0, why}; }
constexpr Row only(When when, Row row) {
  row.when = when;
  return row;
}

// SO_PASSRIGHTS (Linux >= 6.16), newer than the installed kernel headers.
constexpr std::uint64_t kSoPassRights = 83;

// Socket types are compared without SOCK_NONBLOCK/SOCK_CLOEXEC.
constexpr std::uint64_t kSockTypeMask = 0xf;
// Opens that could create, truncate or write a file. O_TMPFILE includes
// O_DIRECTORY, which read-only opens of directories use: only its own bit.
constexpr std::uint64_t kWritingOpen = O_ACCMODE | O_CREAT | O_TRUNC | (O_TMPFILE & ~O_DIRECTORY);
constexpr std::uint64_t kWriteExec = PROT_WRITE | PROT_EXEC;

// Placeholder, above any pid: replaced by the broker's own pid when the filter
// is built (tgkill).
constexpr std::uint64_t kSelf = 0xffffffffu;

constexpr Row kSyscalls[] = {
    // --- memory: malloc, dlopen of an NSS module named in a changed nsswitch.conf.
    // Never writable and executable at once (W^X, as MemoryDenyWriteExecute=).
    allow(SCMP_SYS(brk), "malloc"),
    allow_if(SCMP_SYS(mmap), masked(2, kWriteExec, 0), "malloc, file mappings"),
    allow_if(SCMP_SYS(mmap), masked(2, kWriteExec, PROT_WRITE), "malloc"),
    allow_if(SCMP_SYS(mmap), masked(2, kWriteExec, PROT_EXEC), "dlopen of an NSS module"),
    allow_if(SCMP_SYS(mprotect), masked(2, PROT_EXEC, 0), "dlopen (RELRO), malloc"),
    allow(SCMP_SYS(munmap), "malloc"),
    allow(SCMP_SYS(mremap), "realloc"),
    allow(SCMP_SYS(madvise), "free"),

    // --- descriptors and plain I/O
    allow(SCMP_SYS(read), "policy files, /proc, signalfd"),
    allow(SCMP_SYS(readv), "stdio"),
    allow(SCMP_SYS(write), "logs, audit file"),
    allow(SCMP_SYS(writev), "stdio"),
    allow(SCMP_SYS(pread64), "NSS module loading, the handed-over state"),
    allow(SCMP_SYS(pwrite64), "the state kept in systemd's descriptor store (a memfd)"),
    allow(SCMP_SYS(lseek), "stdio"),
    allow(SCMP_SYS(close), "everything"),
    allow(SCMP_SYS(fcntl), "O_NONBLOCK, F_DUPFD_CLOEXEC of pidfds"),
    allow(SCMP_SYS(fsync), "audit file, should a sink sync"),
    allow(SCMP_SYS(fdatasync), "audit file, should a sink sync"),
    allow(SCMP_SYS(ftruncate), "audit file: a line a full disk cut short is taken back (audit.cpp); the state memfd"),
    allow_if(SCMP_SYS(ioctl), eq(1, TCGETS), "isatty() in stdio and libsystemd's line reader"),
    allow_if(SCMP_SYS(ioctl), eq(1, kPidfdGetInfo), "PIDFD_GET_INFO: a caller's cgroup id, by its pidfd"),

    // --- files: reload (policy files and directories, sysctls), NSS (/etc,
    // nsswitch.conf), identity (/proc/PID/cgroup, /proc/PID/exe), /dev/null.
    // Read-only: no open may create, truncate or write, which keeps even a
    // broker holding CAP_SYS_PTRACE out of /proc/PID/mem for writing.
    allow_if(SCMP_SYS(openat), masked(2, kWritingOpen, 0), "read-only opens (O_PATH and O_DIRECTORY included)"),
    allow(SCMP_SYS(newfstatat), "stat, lstat, fstat"),
    allow(SCMP_SYS(fstat), "fstat"),
    allow(SCMP_SYS(statx), "stat in newer glibc"),
    allow(SCMP_SYS(statfs), "libsystemd: which cgroup hierarchy"),
    allow(SCMP_SYS(fstatfs), "libsystemd: which cgroup hierarchy"),
    allow(SCMP_SYS(getdents64), "policy directories"),
    allow(SCMP_SYS(readlink), "/proc/PID/exe"),
    allow(SCMP_SYS(readlinkat), "/proc/PID/exe"),
    allow(SCMP_SYS(access), "libsystemd probes"),
    allow(SCMP_SYS(faccessat), "libsystemd probes"),
    allow(SCMP_SYS(faccessat2), "libsystemd probes"),

    // --- Unix socket paths bound at reload or revoke (unix_socket_path.cpp),
    // and the control socket removed at exit. Always allowed: a reload may add
    // a root-owned Unix socket, which needs no capability.
    allow(SCMP_SYS(mkdirat), "parent directories"),
    allow(SCMP_SYS(fchownat), "socket_user, socket_group (through an O_PATH descriptor)"),
    allow(SCMP_SYS(fchmodat), "socket_mode"),
    allow(SCMP_SYS(umask), "directories 0755 and socket files 0 whatever the umask"),
    allow(SCMP_SYS(fchmodat2), "socket_mode in newer glibc"),
    allow(SCMP_SYS(unlink), "the control socket at exit"),
    allow(SCMP_SYS(unlinkat), "a stale socket file, a failed bind"),

    // --- sockets: the policy's (AF_INET, AF_INET6, AF_UNIX), the stale-path
    // probe, sd_notify, the journal, nscd. No raw or packet sockets; netlink
    // for sock_diag only.
    allow_if(SCMP_SYS(socket), eq(0, AF_UNIX), eq(2, 0), "Unix paths, stale probes, sd_notify, journal, nscd"),
    allow_if(SCMP_SYS(socket), eq(0, AF_INET), masked(1, kSockTypeMask, SOCK_STREAM), "policy sockets"),
    allow_if(SCMP_SYS(socket), eq(0, AF_INET), masked(1, kSockTypeMask, SOCK_DGRAM), "policy sockets"),
    allow_if(SCMP_SYS(socket), eq(0, AF_INET6), masked(1, kSockTypeMask, SOCK_STREAM), "policy sockets"),
    allow_if(SCMP_SYS(socket), eq(0, AF_INET6), masked(1, kSockTypeMask, SOCK_DGRAM), "policy sockets"),
    // sock_diag: which reuse_port members their holders still have
    // (member_census.cpp). Reads socket tables; needs no capability.
    allow_if(SCMP_SYS(socket), eq(0, AF_NETLINK), eq(2, NETLINK_SOCK_DIAG), "the member census"),
    allow(SCMP_SYS(bind), "policy sockets, reuse_port members, the census's netlink socket"),
    allow(SCMP_SYS(listen), "policy sockets"),
    allow(SCMP_SYS(accept4), "control connections"),
    allow(SCMP_SYS(connect), "stale-path probes, nscd, journal"),
    allow(SCMP_SYS(shutdown), "revoke"),
    allow(SCMP_SYS(getsockopt), "SO_PEERCRED, SO_PEERGROUPS, SO_PEERPIDFD, SO_TYPE, buffer sizes"),
    allow(SCMP_SYS(getsockname), "address of a bound socket"),
    allow(SCMP_SYS(getpeername), "address of a peer"),
    allow(SCMP_SYS(sendmsg), "replies with SCM_RIGHTS, sd_notify"),
    allow(SCMP_SYS(sendto), "send(), journal entries"),
    allow(SCMP_SYS(recvmsg), "requests"),
    // setsockopt: the options socket_factory.cpp sets, and the send buffers
    // of libsystemd's sd_notify socket and of ours to the journal. Nothing
    // else: with CAP_NET_ADMIN kept for transparent sockets, an arbitrary
    // setsockopt could reach netfilter (IPT_SO_SET_REPLACE) from any inet socket.
    allow_if(SCMP_SYS(setsockopt), eq(1, SOL_SOCKET), eq(2, SO_REUSEADDR), "TCP sockets"),
    allow_if(SCMP_SYS(setsockopt), eq(1, SOL_SOCKET), eq(2, SO_REUSEPORT), "reuse_port"),
    allow_if(SCMP_SYS(setsockopt), eq(1, SOL_SOCKET), eq(2, SO_BINDTODEVICE), "bind_to_device"),
    allow_if(SCMP_SYS(setsockopt), eq(1, SOL_SOCKET), eq(2, SO_RCVBUF), "receive_buffer"),
    allow_if(SCMP_SYS(setsockopt), eq(1, SOL_SOCKET), eq(2, SO_SNDBUF), "send_buffer, libsystemd, the journal's"),
    allow_if(SCMP_SYS(setsockopt), eq(1, SOL_SOCKET), eq(2, SO_SNDBUFFORCE), "libsystemd, the journal's (the kernel still wants CAP_NET_ADMIN)"),
    allow_if(SCMP_SYS(setsockopt), eq(1, IPPROTO_IP), eq(2, IP_FREEBIND), "free_bind"),
    allow_if(SCMP_SYS(setsockopt), eq(1, IPPROTO_IP), eq(2, IP_TRANSPARENT), "transparent"),
    allow_if(SCMP_SYS(setsockopt), eq(1, IPPROTO_IPV6), eq(2, IPV6_V6ONLY), "v6only"),
    allow_if(SCMP_SYS(setsockopt), eq(1, IPPROTO_IPV6), eq(2, IPV6_FREEBIND), "free_bind"),
    allow_if(SCMP_SYS(setsockopt), eq(1, IPPROTO_IPV6), eq(2, IPV6_TRANSPARENT), "transparent"),
    allow_if(SCMP_SYS(setsockopt), eq(1, IPPROTO_TCP), eq(2, TCP_FASTOPEN), "fast_open"),
    allow_if(SCMP_SYS(setsockopt), eq(1, SOL_SOCKET), eq(2, SO_PASSCRED),
             "the control socket: every request carries its sender's credentials"),
    allow_if(SCMP_SYS(setsockopt), eq(1, SOL_SOCKET), eq(2, kSoPassRights),
             "the control socket accepts namespace descriptors while a netns = \"request\" socket exists"),

    // --- the event loop and signals
    allow(SCMP_SYS(epoll_create1), "the loop"),
    allow(SCMP_SYS(epoll_ctl), "the loop"),
    allow(SCMP_SYS(epoll_wait), "the loop"),
    allow(SCMP_SYS(epoll_pwait), "the loop"),
    allow(SCMP_SYS(epoll_pwait2), "the loop"),
    allow(SCMP_SYS(poll), "end-of-stream, holder-exit and caller-liveness probes"),
    allow(SCMP_SYS(ppoll), "libsystemd"),
    allow(SCMP_SYS(signalfd4), "SIGTERM, SIGINT, SIGHUP"),
    allow(SCMP_SYS(rt_sigprocmask), "signal masks, abort()"),
    allow(SCMP_SYS(rt_sigaction), "abort()"),
    allow(SCMP_SYS(rt_sigreturn), "signal handlers"),
    allow(SCMP_SYS(restart_syscall), "interrupted calls"),
    // The broker signals no one: a caller's liveness is a poll of its pidfd.
    allow_if(SCMP_SYS(tgkill), eq(0, kSelf), "abort() signals itself"),

    // --- identity, time, randomness, locks, exit
    allow(SCMP_SYS(getpid), "audit events"),
    allow(SCMP_SYS(gettid), "glibc"),
    allow(SCMP_SYS(getuid), "libsystemd"),
    allow(SCMP_SYS(geteuid), "libsystemd"),
    allow(SCMP_SYS(getgid), "libsystemd"),
    allow(SCMP_SYS(getegid), "libsystemd"),
    allow(SCMP_SYS(capget), "capability_hint"),
    allow(SCMP_SYS(clock_gettime), "timestamps (when the vDSO falls back)"),
    allow(SCMP_SYS(gettimeofday), "timestamps (when the vDSO falls back)"),
    allow(SCMP_SYS(getrandom), "mkdtemp, malloc"),
    allow(SCMP_SYS(futex), "spdlog's mutexes, glibc locks"),
    allow(SCMP_SYS(exit), "exit"),
    // --- an upgrade in place (upgrade.hpp): the new image runs under this
    // filter and these capabilities, so executing it gains nothing.
    only(When::upgradable, allow_if(SCMP_SYS(execveat), eq(4, AT_EMPTY_PATH), "upgrade in place: the binary, by descriptor")),
    allow(SCMP_SYS(arch_prctl), "the upgraded image's start-up (TLS)"),
    allow(SCMP_SYS(set_tid_address), "the upgraded image's start-up"),
    allow(SCMP_SYS(set_robust_list), "the upgraded image's start-up"),
    allow(SCMP_SYS(rseq), "the upgraded image's start-up"),
    allow(SCMP_SYS(prlimit64), "the upgraded image's start-up (RLIMIT_NOFILE, RLIMIT_STACK)"),
    allow(SCMP_SYS(pidfd_open), "the upgraded image: its holders' pidfds again; without SO_PEERPIDFD (Linux < 6.5) "
                                "each caller's, by pid (to poll, never to signal)"),
    allow(SCMP_SYS(exit_group), "exit"),

    // --- an upgrade's state and manifest, the fd store's saved state.
    allow(SCMP_SYS(memfd_create), "upgrade state and manifest, the fd store's state"),

    // --- netns = "request": enter the caller's network namespace to bind there.
    only(When::netns_request, allow_if(SCMP_SYS(setns), eq(1, CLONE_NEWNET), "netns = \"request\"")),
    // Which namespace a bind-mounted nsfs file is, once procfs said it is one
    // (descriptor_disposer.cpp: nothing else is asked).
    only(When::netns_request, allow_if(SCMP_SYS(ioctl), eq(1, NS_GET_NSTYPE), "netns = \"request\": the namespace's type")),
    // Who owns it (netns_owner): its user namespace, then that one's owner.
    only(When::netns_request, allow_if(SCMP_SYS(ioctl), eq(1, NS_GET_USERNS), "netns_owner: the namespace's user namespace")),
    only(When::netns_request, allow_if(SCMP_SYS(ioctl), eq(1, NS_GET_OWNER_UID), "netns_owner: that one's owner")),

    // --- sanitizer builds only: AddressSanitizer's raw open(2) and its pipe
    // probing whether memory is readable (UBSan's vptr check), LeakSanitizer's
    // tracer thread that stops the process at exit to scan it.
    only(When::sanitized, allow_if(SCMP_SYS(open), masked(1, kWritingOpen, 0), "sanitizer runtime: /proc/self/maps")),
    only(When::sanitized, allow(SCMP_SYS(pipe2), "sanitizer runtime: readable-memory probe")),
    only(When::sanitized, allow_if(SCMP_SYS(clone), eq(0, CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_UNTRACED),
                                   "LeakSanitizer's tracer thread")),
    only(When::sanitized, allow(SCMP_SYS(ptrace), "LeakSanitizer's tracer")),
    only(When::sanitized, allow(SCMP_SYS(wait4), "LeakSanitizer's tracer")),
    only(When::sanitized, allow(SCMP_SYS(prctl), "LeakSanitizer's tracer: PR_SET_PTRACER, PR_SET_PDEATHSIG, dumpable")),
    only(When::sanitized, allow(SCMP_SYS(sigaltstack), "sanitizer runtime")),
    only(When::sanitized, allow(SCMP_SYS(sched_yield), "sanitizer runtime")),
    only(When::sanitized, allow(SCMP_SYS(getppid), "LeakSanitizer's tracer")),
    only(When::sanitized, allow(SCMP_SYS(getdents), "LeakSanitizer's tracer: /proc/self/task")),

    // --- never: what code injected into the broker would try next.
    never(SCMP_SYS(execve), "running other programs"),
    only(When::not_upgradable, never(SCMP_SYS(execveat), "running other programs")),
    only(When::unsanitized, never(SCMP_SYS(ptrace), "other processes")),
    never(SCMP_SYS(process_vm_readv), "other processes"),
    never(SCMP_SYS(process_vm_writev), "other processes"),
    never(SCMP_SYS(pidfd_getfd), "other processes' descriptors"),
    never(SCMP_SYS(init_module), "kernel code"),
    never(SCMP_SYS(finit_module), "kernel code"),
    never(SCMP_SYS(delete_module), "kernel code"),
    never(SCMP_SYS(kexec_load), "kernel code"),
    never(SCMP_SYS(kexec_file_load), "kernel code"),
    never(SCMP_SYS(bpf), "kernel code"),
    never(SCMP_SYS(io_uring_setup), "binds and opens past this filter"),
    never(SCMP_SYS(mount), "the file system tree"),
    never(SCMP_SYS(umount2), "the file system tree"),
    never(SCMP_SYS(open_tree), "the file system tree"),
    never(SCMP_SYS(move_mount), "the file system tree"),
    never(SCMP_SYS(fsopen), "the file system tree"),
    never(SCMP_SYS(pivot_root), "the file system tree"),
    never(SCMP_SYS(chroot), "the file system tree"),
    never(SCMP_SYS(unshare), "namespaces"),
    never(SCMP_SYS(setuid), "identity"),
    never(SCMP_SYS(setgid), "identity"),
    never(SCMP_SYS(setreuid), "identity"),
    never(SCMP_SYS(setregid), "identity"),
    never(SCMP_SYS(setresuid), "identity"),
    never(SCMP_SYS(setresgid), "identity"),
    never(SCMP_SYS(setgroups), "identity"),
};

struct SeccompRelease {
  void operator()(void* ctx) const noexcept { ::seccomp_release(ctx); }
};

Status seccomp_error(const std::string& what, int rc) { return errno_error("seccomp: " + what, -rc); }

Status install_filter(bool netns_request, bool upgradable) {
  std::unique_ptr<void, SeccompRelease> ctx(::seccomp_init(SCMP_ACT_ERRNO(EPERM)));
  if (!ctx) return Error{0, ENOMEM, "seccomp_init failed"};
  if (int rc = ::seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS); rc != 0) {
    return seccomp_error("cannot make foreign ABIs kill the process", rc);
  }
  // No other thread exists (checked); TSYNC makes that an error, not a gap.
  if (int rc = ::seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_TSYNC, 1); rc != 0) return seccomp_error("cannot set TSYNC", rc);
  if (int rc = ::seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_LOG, 1); rc != 0) return seccomp_error("cannot log refused calls", rc);

  const auto self = static_cast<std::uint64_t>(::getpid());
  for (const Row& row : kSyscalls) {
    if (row.when == When::netns_request && !netns_request) continue;
    if (row.when == When::upgradable && !upgradable) continue;
    if (row.when == When::not_upgradable && upgradable) continue;
    if (row.when == When::sanitized && !kSanitized) continue;
    if (row.when == When::unsanitized && kSanitized) continue;
    std::array<scmp_arg_cmp, 2> args = row.args;
    for (unsigned i = 0; i < row.argc; ++i) {
      if (args[i].datum_b == kSelf) args[i].datum_b = self;
    }
    uint32_t action = row.action == Action::allow ? SCMP_ACT_ALLOW : SCMP_ACT_KILL_PROCESS;
    if (int rc = ::seccomp_rule_add_array(ctx.get(), action, row.syscall, row.argc, args.data()); rc != 0) {
      char* name = ::seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, row.syscall);
      std::string what = "cannot add the rule for " + std::string(name != nullptr ? name : std::to_string(row.syscall));
      std::free(name);
      return seccomp_error(what, rc);
    }
  }
  if (int rc = ::seccomp_load(ctx.get()); rc != 0) return seccomp_error("cannot load the filter", rc);
  return Ok{};
}

// So that the first lookup of an unknown user or group after confinement
// does not have to map a module: glibc loads each NSS service (libnss_systemd
// here) the first time a lookup reaches it, which for a name the "files"
// service lacks is this one.
void preload_nss() {
  std::array<char, 4096> buffer{};
  passwd pw{};
  passwd* pw_found = nullptr;
  (void)::getpwnam_r("sockbroker-nss-preload", &pw, buffer.data(), buffer.size(), &pw_found);
  group gr{};
  group* gr_found = nullptr;
  (void)::getgrnam_r("sockbroker-nss-preload", &gr, buffer.data(), buffer.size(), &gr_found);
}

}  // namespace

std::vector<CapabilityNeed> capabilities_needed(const policy::Policy& policy) {
  // Always: the policy's low ports at reload, and reuse_port members bound per
  // grant. Small, and what a reload most often adds.
  std::vector<CapabilityNeed> out{{CAP_NET_BIND_SERVICE, "ports below 1024"}};
  for (const auto& spec : policy.sockets) {
    for (auto& need : socket_needs(spec)) add_unique(out, std::move(need));
  }
  return out;
}

std::string capability_hint(const policy::SocketSpec& spec) {
  UniqueCaps current(::cap_get_proc());
  if (!current) return {};
  std::string missing;
  for (const auto& need : socket_needs(spec)) {
    if (has(current.get(), need.capability, CAP_EFFECTIVE)) continue;
    std::string name = capability_name(need.capability);
    if (missing.find(name) != std::string::npos) continue;
    missing += (missing.empty() ? "" : ", ") + name + " (" + need.why.substr(need.why.find(": ") + 2) + ")";
  }
  if (missing.empty()) return {};
  return "; it needs " + missing +
         ", which the broker gave up at start-up because no socket needed it then: restart the broker to grant it";
}

bool can_read_callers_executables() {
  UniqueCaps current(::cap_get_proc());
  return current && has(current.get(), CAP_SYS_PTRACE, CAP_EFFECTIVE);
}

Status confine(const policy::Policy& policy, spdlog::logger& log) {
  if (auto s = check_single_threaded(); !s) return s;
  preload_nss();

  std::vector<CapabilityNeed> needs = capabilities_needed(policy);
  std::vector<int> keep;
  for (const auto& need : needs) keep.push_back(need.capability);
  auto narrowed = drop_capabilities(keep, log);
  if (!narrowed) return std::move(narrowed).error();

  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno_error("prctl(PR_SET_NO_NEW_PRIVS)");

  const bool netns_request = std::any_of(policy.sockets.begin(), policy.sockets.end(),
                                         [](const policy::SocketSpec& s) { return s.netns == policy::NetnsMode::request; });
  if (auto s = install_filter(netns_request, *narrowed); !s) return s;
  if (!*narrowed) log.info("confinement: no upgrade in place (SIGUSR2) with the bounding set left as it is");

  std::string kept;
  for (const auto& need : needs) kept += (kept.empty() ? "" : ", ") + capability_name(need.capability) + " (" + need.why + ")";
  log.info("confined: keeping {}; no_new_privs; seccomp allow-list (other system calls fail with EPERM)", kept);
  return Ok{};
}

}  // namespace sockbroker::broker
