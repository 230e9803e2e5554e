#include "netns_binder.hpp"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>

namespace sockbroker::broker {
namespace {

const char* namespace_kind(int nstype) {
  switch (nstype) {
    case CLONE_NEWNS: return "a mount namespace";
    case CLONE_NEWUTS: return "a UTS namespace";
    case CLONE_NEWIPC: return "an IPC namespace";
    case CLONE_NEWUSER: return "a user namespace";
    case CLONE_NEWPID: return "a PID namespace";
    case CLONE_NEWCGROUP: return "a cgroup namespace";
#ifdef CLONE_NEWTIME
    case CLONE_NEWTIME: return "a time namespace";
#endif
    default: return "a namespace of another kind";
  }
}

const char* file_kind(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFDIR: return "a directory";
    case S_IFSOCK: return "a socket";
    case S_IFIFO: return "a pipe";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    default: return "not a namespace";
  }
}

}  // namespace

Result<std::uint64_t> network_namespace_inode(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error("fstat of the namespace descriptor");
  // Namespace files (nsfs) answer NS_GET_NSTYPE; every other file refuses the
  // ioctl (ENOTTY), so this also tells a namespace from a look-alike path.
  int type = ::ioctl(fd, NS_GET_NSTYPE);
  if (type < 0) {
    if (errno == ENOTTY || errno == EINVAL) {
      return Error{0, 0, std::string("the descriptor sent with the request is ") + file_kind(st.st_mode) +
                             ", not a network namespace (send an open /proc/PID/ns/net or /run/netns/NAME)"};
    }
    return errno_error("ioctl(NS_GET_NSTYPE) on the descriptor sent with the request");
  }
  if (type != CLONE_NEWNET) {
    return Error{0, 0, std::string("the descriptor sent with the request is ") + namespace_kind(type) +
                           ", not a network namespace (send an open /proc/PID/ns/net or /run/netns/NAME)"};
  }
  return static_cast<std::uint64_t>(st.st_ino);
}

// Why the calling thread itself enters the namespace and comes back, rather
// than a short-lived helper thread: the broker's loop is single-threaded, so
// nobody else is served while it is away, and a thread would need clone3 in
// the seccomp allow-list. clone3's flags live in memory a filter cannot read,
// and this broker keeps CAP_SYS_ADMIN for setns: allowing clone3 would let
// code injected into it make new namespaces of every kind, which the filter
// otherwise forbids (unshare is a kill). The price is that failing to return
// must end the process: a broker stranded in a container's namespace would
// bind every later socket there. setns back into a namespace we hold open,
// with the capability that just let us leave, does not fail in practice.
Result<OpenedSocket> open_in_netns(const policy::SocketSpec& spec, int netns_fd) {
  // The way back, opened per grant so the broker keeps no extra descriptor
  // between requests; thread-self because namespaces are per thread.
  UniqueFd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!home) return errno_error("open /proc/thread-self/ns/net (the broker's own network namespace)");
  if (::setns(netns_fd, CLONE_NEWNET) != 0) return errno_error("setns into the requested network namespace");

  // Only the socket calls run over there: no logging, no audit, no NSS (any of
  // which could open a socket that would belong to the container).
  auto opened = open_policy_socket(spec);

  if (::setns(home.get(), CLONE_NEWNET) != 0) {
    // Not a logger call: nothing may run in the wrong namespace, and this is
    // the last thing the process does.
    static constexpr char kMessage[] =
        "sockbrokerd: cannot return to its own network namespace after binding in a requested one; aborting\n";
    (void)!::write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
    std::abort();
  }
  return opened;
}

}  // namespace sockbroker::broker
