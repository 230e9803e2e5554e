#include "descriptor_disposer.hpp"

#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <string_view>

namespace sockbroker::broker {
namespace {

// SCM_MAX_FD: the most descriptors one message carries.
constexpr std::size_t kFdsPerMessage = 253;
// The disposer gathers this many before it forks its successor: one fork per
// burst, not per message.
constexpr std::size_t kBatch = 4 * kFdsPerMessage;
// Descriptors the broker keeps when the disposer is gone (it cannot fork
// another once confined) before it closes on the loop as a last resort.
constexpr std::size_t kMaxKeptWithoutDisposer = 4096;

// ---------------------------------------------------------------------------
// The disposer process. Plain system calls only: after each fork the child
// carries on in this code with no allocator and no locks to worry about.

[[noreturn]] void exit_now(int status) {
  ::syscall(SYS_exit_group, status);
  __builtin_unreachable();
}

// What the broker sends: descriptors ('f'), and, once it has closed its own
// copies of everything sent before, a confirmation ('c'). The disposer never
// releases a descriptor before its confirmation: were the broker still to
// hold a copy, its close would then be the last reference.
constexpr char kDescriptors = 'f';
constexpr char kClosed = 'c';

enum class Got { descriptors, closed, nothing_yet, end };

// Receives one message, its descriptors into fds[*count...].
Got receive_one(int sock, int* fds, std::size_t* count, bool wait) {
  char kind = 0;
  iovec iov{&kind, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kFdsPerMessage)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | (wait ? 0 : MSG_DONTWAIT));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno == EAGAIN ? Got::nothing_yet : Got::end;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    std::memcpy(fds + *count, CMSG_DATA(c), k * sizeof(int));
    *count += k;
  }
  if (n == 0) return Got::end;  // the broker is gone
  return kind == kClosed ? Got::closed : Got::descriptors;
}

#if defined(__SANITIZE_ADDRESS__)
// The sanitizers' runtime maps memory (fake stacks), yields and reports on its
// own; refused, it spins. Sanitizer builds test the code, the plain build the
// filter.
constexpr std::uint32_t kDefaultAction = SCMP_ACT_ALLOW;
#else
constexpr std::uint32_t kDefaultAction = SCMP_ACT_ERRNO(EPERM);
#endif

void install_disposer_filter() {
  scmp_filter_ctx ctx = ::seccomp_init(kDefaultAction);
  if (ctx == nullptr) exit_now(70);
  const int allowed[] = {SCMP_SYS(recvmsg), SCMP_SYS(close),      SCMP_SYS(pipe2),        SCMP_SYS(read),
                         SCMP_SYS(write),   SCMP_SYS(exit),       SCMP_SYS(exit_group),   SCMP_SYS(rt_sigreturn),
                         SCMP_SYS(restart_syscall)};
  bool ok = ::seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) == 0;
  if (kDefaultAction != SCMP_ACT_ALLOW) {
    for (int nr : allowed) ok = ok && ::seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) == 0;
    // fork(2) without glibc's bookkeeping: exactly SIGCHLD, no sharing, no namespaces.
    ok = ok && ::seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_EQ, SIGCHLD)) == 0;
  }
  ok = ok && ::seccomp_load(ctx) == 0;
  ::seccomp_release(ctx);
  if (!ok) exit_now(71);
}

[[noreturn]] void run_disposer(int sock) {
  // Nothing of the broker's but the socket: no port, no control socket.
  if (sock != 3) {
    if (::dup2(sock, 3) < 0) exit_now(72);
    sock = 3;
  }
  ::syscall(SYS_close_range, 0U, 2U, 0U);
  ::syscall(SYS_close_range, 4U, ~0U, 0U);
  ::prctl(PR_SET_NAME, "sb-disposer", 0, 0, 0);
  // The broker blocks the signals its loop reads; the disposer takes SIGTERM
  // as any process does (systemd stops the whole unit with it).
  sigset_t unblocked;
  sigemptyset(&unblocked);
  ::sigprocmask(SIG_SETMASK, &unblocked, nullptr);
  // It stays uid 0, so that no unprivileged process may signal it, but with
  // no capability: closing needs none.
  cap_t none = ::cap_init();
  if (none == nullptr || ::cap_set_proc(none) != 0) exit_now(73);
  ::cap_free(none);
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) exit_now(74);
  install_disposer_filter();

  // fds[0, confirmed) are released next; fds[confirmed, count) wait for the
  // broker's confirmation. The broker sends one message of descriptors at a
  // time, then its confirmation: at most one message waits.
  constexpr std::size_t kCapacity = kBatch + 2 * kFdsPerMessage;
  static int fds[kCapacity];
  std::size_t count = 0, confirmed = 0;
  for (;;) {
    // Block only while nothing is ready to release.
    const Got got = receive_one(sock, fds, &count, confirmed == 0);
    // The broker gone, what this process holds is released by its exit,
    // which never lingers.
    if (got == Got::end) exit_now(0);
    if (got == Got::closed) confirmed = count;
    // Gather a burst while messages come and there is room: one fork per
    // burst, not per message.
    if (got != Got::nothing_yet && confirmed < kBatch && count + kFdsPerMessage <= kCapacity) continue;
    if (confirmed == 0) continue;
    int handshake[2];
    if (::pipe2(handshake, O_CLOEXEC) != 0) {
      // Last resort: release them here. Only this process may wait.
      for (std::size_t i = 0; i < confirmed; ++i) ::close(fds[i]);
    } else if (long child = ::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0); child < 0) {
      ::close(handshake[0]);
      ::close(handshake[1]);
      for (std::size_t i = 0; i < confirmed; ++i) ::close(fds[i]);
    } else if (child == 0) {
      // The successor. The old process still holds every descriptor of the
      // batch, so none of these closes is the last one, and none can wait.
      // It keeps those not confirmed yet.
      ::close(handshake[0]);
      for (std::size_t i = 0; i < confirmed; ++i) ::close(fds[i]);
      char done = 'd';
      (void)!::write(handshake[1], &done, 1);
      ::close(handshake[1]);
    } else {
      // The old process: once the successor holds none of the batch, exit. The
      // kernel releases the batch for an exiting process, which never lingers.
      ::close(handshake[1]);
      char done;
      (void)!::read(handshake[0], &done, 1);
      exit_now(0);
    }
    std::memmove(fds, fds + confirmed, (count - confirmed) * sizeof(int));
    count -= confirmed;
    confirmed = 0;
  }
}

// Best effort for the last resort (no disposer): an abortive close does not
// wait. Another holder of the socket could set SO_LINGER again in between;
// that is why this is the last resort and not the design.
void close_without_lingering(UniqueFd fd) {
  linger abort{1, 0};
  (void)::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
  fd.reset();
}

// A /proc file read whole (at most `limit` bytes); "" when it cannot be read.
std::string read_proc_file(const std::string& path, std::size_t limit) {
  UniqueFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!file) return {};
  std::string text;
  char chunk[4096];
  while (text.size() < limit) {
    ssize_t n = ::read(file.get(), chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(chunk, static_cast<std::size_t>(n));
  }
  return text;
}

// The file system type of the mount a descriptor's file is on, from
// /proc/self/fdinfo (mnt_id) and /proc/self/mountinfo: procfs answers, not
// the file system. "" when unknown.
std::string file_system_of(int fd) {
  const std::string info = read_proc_file("/proc/self/fdinfo/" + std::to_string(fd), 4096);
  const std::size_t at = info.find("mnt_id:");
  if (at == std::string::npos) return {};
  std::size_t pos = info.find_first_not_of(" \t", at + 7);
  std::size_t end = info.find('\n', pos);
  if (pos == std::string::npos) return {};
  const std::string mount_id = info.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
  const std::string mounts = read_proc_file("/proc/self/mountinfo", 1 << 20);
  std::size_t line = 0;
  while (line < mounts.size()) {
    std::size_t next = mounts.find('\n', line);
    if (next == std::string::npos) next = mounts.size();
    std::string_view row(mounts.data() + line, next - line);
    if (row.starts_with(mount_id + " ")) {
      // "ID PARENT MAJ:MIN ROOT POINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPER"
      std::size_t dash = row.find(" - ");
      if (dash == std::string_view::npos) return {};
      std::string_view rest = row.substr(dash + 3);
      return std::string(rest.substr(0, rest.find(' ')));
    }
    line = next + 1;
  }
  return {};
}

// Whether fd's file is on nsfs, for a mount file_system_of() cannot name: one
// of another mount namespace (`ip netns exec`, which a runtime may run the
// request under, makes one, with its own copy of /run/netns/NAME). Asked of the
// kernel's cached attributes only: with AT_STATX_DONT_SYNC, FUSE, NFS, CIFS and
// Ceph answer from their cache instead of asking their server, and those that
// would always ask (9p without a cache) cannot be mounted without privilege.
// nsfs is one superblock: its device is that of the broker's own namespace.
bool on_nsfs(int fd) {
  struct statx attributes {};
  if (::statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE, &attributes) != 0) return false;
  struct stat own {};
  if (::stat("/proc/thread-self/ns/net", &own) != 0) return false;
  return makedev(attributes.stx_dev_major, attributes.stx_dev_minor) == own.st_dev;
}

std::string namespace_description(std::string_view type) {
  if (type == "net") return "a network namespace";
  if (type == "mnt") return "a mount namespace";
  if (type == "uts") return "a UTS namespace";
  if (type == "ipc") return "an IPC namespace";
  if (type == "user") return "a user namespace";
  if (type == "cgroup") return "a cgroup namespace";
  if (type.starts_with("pid")) return "a PID namespace";
  if (type.starts_with("time")) return "a time namespace";
  return "a namespace of another kind";
}

std::string namespace_type_of(int nstype) {
  switch (nstype) {
    case CLONE_NEWNET: return "net";
    case CLONE_NEWNS: return "mnt";
    case CLONE_NEWUTS: return "uts";
    case CLONE_NEWIPC: return "ipc";
    case CLONE_NEWUSER: return "user";
    case CLONE_NEWPID: return "pid";
    case CLONE_NEWCGROUP: return "cgroup";
    default: return "other";
  }
}

}  // namespace

DescriptorKind classify_descriptor(int fd) {
  DescriptorKind kind;
  char link[64];
  char target[256];
  auto [end, ec] = std::to_chars(link, link + sizeof link, fd);
  std::string path = "/proc/self/fd/" + std::string(link, end);
  ssize_t n = ::readlink(path.c_str(), target, sizeof target - 1);
  if (n <= 0) {
    kind.description = "a descriptor the broker cannot identify";
    return kind;
  }
  std::string_view text(target, static_cast<std::size_t>(n));
  // nsfs names its files "TYPE:[INODE]"; a file system path starts with "/".
  static constexpr std::string_view kNamespaces[] = {"net", "mnt", "uts", "ipc", "user", "pid", "cgroup", "time",
                                                     "pid_for_children", "time_for_children"};
  for (std::string_view type : kNamespaces) {
    if (text.size() > type.size() + 3 && text.substr(0, type.size()) == type &&
        text.substr(type.size(), 2) == ":[" && text.back() == ']') {
      std::string_view digits = text.substr(type.size() + 2, text.size() - type.size() - 3);
      std::uint64_t inode = 0;
      auto parsed = std::from_chars(digits.data(), digits.data() + digits.size(), inode);
      if (parsed.ec != std::errc() || parsed.ptr != digits.data() + digits.size()) break;
      kind.is_namespace = true;
      kind.namespace_type = std::string(type);
      kind.inode = inode;
      kind.description = namespace_description(type);
      return kind;
    }
  }
  if (text.starts_with("socket:[")) {
    kind.description = "a socket";
  } else if (text.starts_with("pipe:[")) {
    kind.description = "a pipe";
  } else if (text.starts_with("anon_inode:")) {
    kind.description = "an anonymous inode (" + std::string(text.substr(11)) + ")";
  } else if (text.starts_with("/")) {
    // A path: a file, or a namespace bind-mounted there (/run/netns/NAME is
    // one). Only nsfs, which procfs names (or, for a mount of another mount
    // namespace, its cached attributes), is asked anything further.
    const std::string fs = file_system_of(fd);
    if (fs == "nsfs" || (fs.empty() && on_nsfs(fd))) {
      const int nstype = ::ioctl(fd, NS_GET_NSTYPE);
      struct stat st {};
      if (nstype >= 0 && ::fstat(fd, &st) == 0) {
        kind.is_namespace = true;
        kind.namespace_type = namespace_type_of(nstype);
        kind.inode = static_cast<std::uint64_t>(st.st_ino);
        kind.description = namespace_description(kind.namespace_type);
        return kind;
      }
    }
    kind.description = fs.empty() ? "a file or directory" : "a file or directory (on " + fs + ")";
  } else {
    kind.description = "not a namespace";
  }
  return kind;
}

Result<Disposer> Disposer::start() {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) return errno_error("socketpair (disposer)");
  UniqueFd ours(pair[0]);
  UniqueFd theirs(pair[1]);
  // Forked twice, so that the disposer is nobody's child here: its
  // successors' exits are reaped by init, not left to a broker that cannot wait.
  pid_t middle = ::fork();
  if (middle < 0) return errno_error("fork (disposer)");
  if (middle == 0) {
    ours.reset();
    pid_t disposer = ::fork();
    if (disposer == 0) run_disposer(theirs.get());
    exit_now(disposer < 0 ? 1 : 0);
  }
  theirs.reset();
  int status = 0;
  while (::waitpid(middle, &status, 0) < 0) {
    if (errno != EINTR) return errno_error("waitpid (disposer)");
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return Error{0, EAGAIN, "cannot fork the disposer process"};
  if (::fcntl(ours.get(), F_SETFL, O_NONBLOCK) != 0) return errno_error("fcntl(O_NONBLOCK) (disposer)");
  return Disposer(std::move(ours));
}

Disposer::~Disposer() {
  // Whatever could not be sent is kept until exit: the kernel releases an
  // exiting process's descriptors without lingering.
  for (auto& fd : queued_) (void)fd.release();
}

void Disposer::take(UniqueFd fd) {
  if (fd) queued_.push_back(std::move(fd));
}

void Disposer::take_received(std::span<UniqueFd> fds) {
  for (auto& fd : fds) {
    if (!fd) continue;
    if (classify_descriptor(fd.get()).is_namespace) {
      fd.reset();  // a namespace reference is released at once, never waited on
    } else {
      take(std::move(fd));
    }
  }
}

void Disposer::flush(spdlog::logger& log) {
  while (alive_) {
    if (confirm_pending_) {
      // Our copies of everything sent so far are closed: the disposer may
      // release them now (it must not before, or our close would be the last).
      char kind = kClosed;
      if (::send(socket_.get(), &kind, 1, MSG_DONTWAIT | MSG_NOSIGNAL) != 1) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == ENOBUFS) return;  // the loop retries soon
        break;
      }
      confirm_pending_ = false;
    }
    if (queued_.empty()) return;
    const std::size_t n = std::min(queued_.size(), kFdsPerMessage);
    char kind = kDescriptors;
    iovec iov{&kind, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kFdsPerMessage)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    int* data = reinterpret_cast<int*>(CMSG_DATA(c));
    const std::size_t first = queued_.size() - n;
    for (std::size_t i = 0; i < n; ++i) data[i] = queued_[first + i].get();
    if (::sendmsg(socket_.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == ENOBUFS) return;  // the loop retries soon
      break;
    }
    // The disposer holds these now (in flight, or received), and releases
    // none before our confirmation, sent after this close.
    queued_.resize(first);
    confirm_pending_ = true;
  }
  if (alive_) {
    alive_ = false;
    log.critical("the descriptor disposer is gone ({}); descriptors clients send are kept until the broker "
                 "restarts (up to {})",
                 std::strerror(errno), kMaxKeptWithoutDisposer);
  }
  if (!alive_ && queued_.size() > kMaxKeptWithoutDisposer) {
    log.error("{} descriptors wait for a disposer that is gone; closing the oldest on the event loop",
              queued_.size() - kMaxKeptWithoutDisposer);
    while (queued_.size() > kMaxKeptWithoutDisposer) {
      close_without_lingering(std::move(queued_.front()));
      queued_.erase(queued_.begin());
    }
  }
}

}  // namespace sockbroker::broker
