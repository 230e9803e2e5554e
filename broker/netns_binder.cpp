#include "netns_binder.hpp"

#include "descriptor_disposer.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>

namespace sockbroker::broker {

Result<NamespaceFacts> inspect_network_namespace(int fd) {
  // Read from the descriptor's /proc link, never from the file: fstat or an
  // ioctl would call into whatever file system the client's file lives on
  // (a FUSE server can make either wait forever).
  DescriptorKind kind = classify_descriptor(fd);
  if (!kind.is_namespace || kind.namespace_type != "net") {
    return Error{0, 0, "the descriptor sent with the request is " + kind.description +
                           ", not a network namespace (send an open /proc/PID/ns/net or /run/netns/NAME)"};
  }
  NamespaceFacts facts;
  facts.inode = kind.inode;
  // Asked per request, not remembered: cheap, and true of the thread that is
  // about to enter the namespace. nsfs is one file system, so the inode alone
  // names a namespace.
  struct stat own {};
  if (::stat("/proc/thread-self/ns/net", &own) != 0) {
    return errno_error("cannot tell the broker's own network namespace (/proc/thread-self/ns/net)");
  }
  facts.brokers_own = static_cast<std::uint64_t>(own.st_ino) == kind.inode;
  return facts;
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
