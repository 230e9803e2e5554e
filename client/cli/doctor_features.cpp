// Each feature is asked of the kernel itself, never inferred from its version
// string: distributions backport, and containers filter.
#include "doctor_features.hpp"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kernel_probe.hpp"
#include "lockdown_layers.hpp"

namespace sockbroker::cli {
namespace {

// Landlock ABI versions (include/uapi/linux/landlock.h, Documentation/userspace-api/landlock.rst).
constexpr int kLandlockReferAbi = 2;    // LANDLOCK_ACCESS_FS_REFER, Linux 5.19
constexpr int kLandlockNetworkAbi = 4;  // LANDLOCK_ACCESS_NET_BIND_TCP, Linux 6.7

// Exit codes of the user-notification probe's child.
constexpr int kProbeAddfdWorks = 0;
constexpr int kProbeNoListener = 1;
constexpr int kProbeNoAddfd = 2;

// Whether `sockbroker run` can answer a program's bind(2): a seccomp filter
// that reports to a listener (SECCOMP_FILTER_FLAG_NEW_LISTENER, Linux 5.0)
// and a listener that can put a descriptor into the program
// (SECCOMP_IOCTL_NOTIF_ADDFD, Linux 5.9). A filter stays for the life of a
// process, so a child installs one (it allows everything) and asks ADDFD for
// a notification that does not exist: ENOENT where the ioctl exists, EINVAL
// before. `why` gets the reason when it cannot.
bool seccomp_can_answer_binds(std::string* why) {
  const pid_t child = ::fork();
  if (child < 0) {
    *why = std::string("cannot fork the probe: ") + std::strerror(errno);
    return false;
  }
  if (child == 0) {
    sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    sock_fprog program{1, allow};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(kProbeNoListener);
    const long listener = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &program);
    if (listener < 0) _exit(kProbeNoListener);
    seccomp_notif_addfd addfd{};
    addfd.id = 0;
    addfd.srcfd = static_cast<__u32>(listener);
    const bool exists = ::ioctl(static_cast<int>(listener), SECCOMP_IOCTL_NOTIF_ADDFD, &addfd) == 0 || errno == ENOENT;
    _exit(exists ? kProbeAddfdWorks : kProbeNoAddfd);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == kProbeAddfdWorks) return true;
  *why = code == kProbeNoListener ? "no seccomp filter with a listener here: Linux < 5.0, or refused"
         : code == kProbeNoAddfd  ? "no SECCOMP_IOCTL_NOTIF_ADDFD: Linux < 5.9"
                                  : "the probe died";
  return false;
}

// A feature as the table names it, before the kernel is asked.
struct Feature {
  const char* name;
  const char* since;
  const char* gives;
};

FeatureFinding found(const Feature& feature, bool present, Verdict absent_verdict, std::string absent) {
  return {feature.name, feature.since, present, present ? Verdict::ok : absent_verdict, feature.gives,
          present ? "present" : std::move(absent)};
}

}  // namespace

std::vector<FeatureFinding> probe_features() {
  std::vector<FeatureFinding> out;
  out.push_back(found(
      {"SO_PEERGROUPS", "Linux 4.13", "the broker reads each caller's supplementary groups, for `allow` rules by group"},
      kernel_probe::gives_peer_groups(), Verdict::bad,
      "absent: the broker cannot read callers' groups and drops every connection"));
  out.push_back(found(
      {"SO_PEERPIDFD", "Linux 6.5",
       "the broker holds each caller's process from its connect, for unit, executable and cgroup rules and to "
       "count its grants"},
      kernel_probe::gives_peer_pidfd(), Verdict::missing,
      "absent: the broker finds each caller's process by pid at accept, as safely; a caller whose uid or gid "
      "changed before the accept matches no unit, executable or cgroup rule and gets no reuse_port or max_grants "
      "socket"));

  std::string landlock_why;
  auto abi = lockdown_layers::landlock_abi_version(&landlock_why);
  const int landlock = abi ? *abi : 0;
  if (!abi) landlock_why = abi.error().message;
  auto landlock_absent = [&](const std::string& consequence) {
    return "absent (" + (landlock == 0 ? landlock_why : "Landlock ABI " + std::to_string(landlock)) +
           "): " + consequence;
  };
  out.push_back(found(
      {"Landlock ABI >= 2", "Linux 5.19, lsm=landlock",
       "`sockbroker run` keeps a locked-down program out of its uid's other processes (/proc/PID/mem)"},
      landlock >= kLandlockReferAbi, Verdict::warn,
      landlock_absent("a locked-down program can write into the memory of a process of its uid that is not "
                      "locked down; set kernel.yama.ptrace_scope >= 1")));
  out.push_back(found(
      {"Landlock ABI >= 4", "Linux 6.7, lsm=landlock",
       "a second layer, beside seccomp, that refuses a locked-down program's TCP binds"},
      landlock >= kLandlockNetworkAbi, Verdict::warn,
      landlock_absent("the lockdown relies on its seccomp layer alone to refuse binds")));

  std::string notif_why;
  const bool answers_binds = seccomp_can_answer_binds(&notif_why);
  out.push_back(found(
      {"seccomp NOTIF_ADDFD", "Linux 5.9",
       "`sockbroker run` answers a program's own bind(2) with the policy's socket (nginx, haproxy, Go, Node)"},
      answers_binds, Verdict::warn,
      "absent (" + notif_why + "): only programs that take their sockets as LISTEN_FDS run under `sockbroker run`"));
  out.push_back(found(
      {"SO_PASSRIGHTS", "Linux 6.16",
       "the control socket refuses descriptors at the kernel, unless the policy has a netns = \"request\" socket"},
      kernel_probe::can_refuse_passed_rights(), Verdict::missing,
      "absent: descriptors a client attaches reach the broker, which hands them to its disposer process unread"));
  return out;
}

}  // namespace sockbroker::cli
