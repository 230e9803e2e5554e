#include "bind_server.hpp"

#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "socket_carryover.hpp"

namespace sockbroker::cli {
namespace {

// The address a program asked for, as a person would write it.
std::string address_text(const sockaddr_storage& address, socklen_t length) {
  char host[INET6_ADDRSTRLEN] = {};
  switch (address.ss_family) {
    case AF_INET: {
      const auto& sin = reinterpret_cast<const sockaddr_in&>(address);
      ::inet_ntop(AF_INET, &sin.sin_addr, host, sizeof host);
      return std::string(host) + ":" + std::to_string(ntohs(sin.sin_port));
    }
    case AF_INET6: {
      const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(address);
      ::inet_ntop(AF_INET6, &sin6.sin6_addr, host, sizeof host);
      return "[" + std::string(host) + "]:" + std::to_string(ntohs(sin6.sin6_port));
    }
    case AF_UNIX: {
      const auto& sun = reinterpret_cast<const sockaddr_un&>(address);
      const std::size_t n = length > offsetof(sockaddr_un, sun_path) ? length - offsetof(sockaddr_un, sun_path) : 0;
      if (n == 0) return "an automatically chosen Unix name";
      if (sun.sun_path[0] == '\0') return "@" + std::string(sun.sun_path + 1, n - 1);
      return std::string(sun.sun_path, strnlen(sun.sun_path, n));
    }
    default:
      return "an address of family " + std::to_string(address.ss_family);
  }
}

int socket_int(int fd, int level, int name) {
  int value = -1;
  socklen_t length = sizeof value;
  return ::getsockopt(fd, level, name, &value, &length) == 0 ? value : -1;
}

// Whether the socket has an address already (a second bind fails with EINVAL).
bool already_bound(int fd, int family) {
  sockaddr_storage own{};
  socklen_t length = sizeof own;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&own), &length) != 0) return false;
  if (family == AF_INET) return reinterpret_cast<const sockaddr_in&>(own).sin_port != 0;
  if (family == AF_INET6) return reinterpret_cast<const sockaddr_in6&>(own).sin6_port != 0;
  if (family == AF_UNIX) return length > offsetof(sockaddr_un, sun_path);
  return false;
}

// Whether the program's descriptor is close-on-exec: its /proc fdinfo says
// (the duplicate pidfd_getfd made is ours, with flags of its own). nullopt:
// the file cannot be opened in that directory.
std::optional<bool> close_on_exec_in(int fdinfo_dir, int fd) {
  UniqueFd info(::openat(fdinfo_dir, std::to_string(fd).c_str(), O_RDONLY | O_CLOEXEC));
  if (!info) return std::nullopt;
  char text[512];
  ssize_t n = ::read(info.get(), text, sizeof text - 1);
  if (n <= 0) return true;  // the safer guess
  text[n] = '\0';
  const char* flags = std::strstr(text, "flags:");
  if (flags == nullptr) return true;
  return (std::strtoul(flags + 6, nullptr, 8) & O_CLOEXEC) != 0;
}

UniqueFd take_descriptor(int pidfd, int fd) {
  return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, fd, 0)));
}

// The thread group id /proc gives for a thread id, or -1.
pid_t thread_group_of(pid_t tid) {
  const std::string path = "/proc/" + std::to_string(tid) + "/status";
  UniqueFd status(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!status) return -1;
  char text[4096];
  const ssize_t n = ::read(status.get(), text, sizeof text - 1);
  if (n <= 0) return -1;
  text[n] = '\0';
  const char* line = std::strstr(text, "\nTgid:");
  if (line == nullptr) return -1;
  const long tgid = std::strtol(line + 6, nullptr, 10);
  return tgid > 0 ? static_cast<pid_t>(tgid) : -1;
}

// A pidfd for the thread that waits, whose descriptor table is the one its
// call names. The notification gives the thread's id, and pidfd_open(2) of
// a thread that is not its group's leader fails (ENOENT or EINVAL) unless
// asked for with PIDFD_THREAD (Linux 6.9). Before that, the leader's pidfd:
// a pthread shares its leader's table.
UniqueFd open_caller(pid_t tid) {
  constexpr unsigned kPidfdThread = O_EXCL;  // PIDFD_THREAD; not in every <linux/pidfd.h>
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, tid, kPidfdThread)));
  if (pidfd || errno != EINVAL) return pidfd;
  const pid_t leader = thread_group_of(tid);
  if (leader < 0) return UniqueFd();
  return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, leader, 0)));
}

}  // namespace

BindServer::BindServer(UniqueFd listener, std::string control, std::set<std::uint64_t> granted)
    : listener_(std::move(listener)), control_(std::move(control)), granted_(std::move(granted)) {
  // The kernel's structures may be larger than the headers we were built
  // with; RECV wants a buffer of its size, zeroed.
  seccomp_notif_sizes sizes{};
  if (::syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) == 0) {
    notif_size_ = std::max<std::size_t>(sizes.seccomp_notif, sizeof(seccomp_notif));
    resp_size_ = std::max<std::size_t>(sizes.seccomp_notif_resp, sizeof(seccomp_notif_resp));
  } else {
    notif_size_ = sizeof(seccomp_notif);
    resp_size_ = sizeof(seccomp_notif_resp);
  }
}

bool BindServer::still_waiting(std::uint64_t id) const {
  return ::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0;
}

Status BindServer::serve_one() {
  std::vector<std::uint64_t> notif_buffer((notif_size_ + 7) / 8, 0);
  auto* request = reinterpret_cast<seccomp_notif*>(notif_buffer.data());
  if (::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_RECV, request) != 0) {
    // ENOENT: the program was interrupted, or died, before we read it.
    if (errno == EINTR || errno == ENOENT) return Ok{};
    return errno_error("ioctl(SECCOMP_IOCTL_NOTIF_RECV)");
  }
  Answer answer;
  // A descriptor of the very thread that waits: its id could be reused once
  // it is gone, so the notification must still be valid after opening.
  UniqueFd pidfd = open_caller(static_cast<pid_t>(request->pid));
  const int open_error = errno;
  if (!still_waiting(request->id)) return Ok{};  // gone: nothing to answer
  if (!pidfd) {
    // Still waiting, and it must not wait forever: refused as any other
    // call we cannot check.
    answer.error = request->data.nr == SYS_bind ? EACCES : EPERM;
    answer.note = "system call " + std::to_string(request->data.nr) +
                  " refused: the supervisor cannot open the calling thread (pidfd_open: " +
                  std::strerror(open_error) + ")";
  } else {
    switch (request->data.nr) {
      case SYS_bind:
        answer = answer_bind(request->id, static_cast<pid_t>(request->pid), pidfd.get(), request->data.args);
        break;
      case SYS_listen: answer = answer_listen(request->id, pidfd.get(), request->data.args); break;
      default:
        answer.error = EPERM;
        answer.note = "system call " + std::to_string(request->data.nr) + " is not one the supervisor serves";
    }
  }

  std::vector<std::uint64_t> resp_buffer((resp_size_ + 7) / 8, 0);
  auto* response = reinterpret_cast<seccomp_notif_resp*>(resp_buffer.data());
  response->id = request->id;
  response->val = 0;
  response->error = -answer.error;
  response->flags = 0;
  if (::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_SEND, response) != 0 && errno != ENOENT) {
    return errno_error("ioctl(SECCOMP_IOCTL_NOTIF_SEND)");
  }
  if (!answer.note.empty()) {
    std::string line = "sockbroker run: pid " + std::to_string(request->pid) + ": " + answer.note + "\n";
    (void)!::write(STDERR_FILENO, line.data(), line.size());
  }
  return Ok{};
}

BindServer::Answer BindServer::answer_bind(std::uint64_t id, pid_t tid, int pidfd, const __u64 args[6]) {
  const int fd = static_cast<int>(args[0]);
  const auto remote = static_cast<std::uintptr_t>(args[1]);
  const auto length = static_cast<socklen_t>(args[2]);
  if (length < sizeof(sa_family_t) || length > sizeof(sockaddr_storage)) return {EINVAL, {}};

  // The address, read once, into our memory: everything after uses this copy.
  sockaddr_storage address{};
  iovec local{&address, length};
  iovec theirs{reinterpret_cast<void*>(remote), length};
  if (::process_vm_readv(tid, &local, 1, &theirs, 1, 0) != static_cast<ssize_t>(length)) {
    const int err = errno;
    if (err == EFAULT) return {EFAULT, {}};
    return {EACCES, std::string("bind refused: the supervisor cannot read the address it passed (") +
                        std::strerror(err) + "; reading another process's memory needs ptrace access to it)"};
  }
  if (!still_waiting(id)) return {EACCES, {}};  // what was read may be a successor's

  UniqueFd socket = take_descriptor(pidfd, fd);
  if (!socket) return {errno == EBADF ? EBADF : EACCES, {}};
  const int family = socket_int(socket.get(), SOL_SOCKET, SO_DOMAIN);
  if (family < 0) return {ENOTSOCK, {}};
  if (address.ss_family != family) return {EAFNOSUPPORT, {}};
  if (already_bound(socket.get(), family)) return {EINVAL, {}};

  const std::string asked = address_text(address, length);
  if (family == AF_NETLINK) {
    // Opens no port: bound here, on the program's own socket, with our copy.
    if (::bind(socket.get(), reinterpret_cast<const sockaddr*>(&address), length) != 0) return {errno, {}};
    return {};
  }
  if (family != AF_INET && family != AF_INET6 && family != AF_UNIX) {
    return {EACCES, "bind of " + asked + " refused: only IPv4, IPv6 and Unix sockets are served by the broker"};
  }
  const bool ephemeral = (family == AF_INET && reinterpret_cast<const sockaddr_in&>(address).sin_port == 0) ||
                         (family == AF_INET6 && reinterpret_cast<const sockaddr_in6&>(address).sin6_port == 0) ||
                         (family == AF_UNIX && length <= offsetof(sockaddr_un, sun_path));
  if (ephemeral) {
    return {EACCES, "bind of " + asked + " refused: a port (or name) chosen by the kernel is no policy socket; "
                    "the broker hands out the addresses its policy names"};
  }
  const int type = socket_int(socket.get(), SOL_SOCKET, SO_TYPE);
  const bool v6only = family != AF_INET6 || socket_int(socket.get(), IPPROTO_IPV6, IPV6_V6ONLY) != 0;

  if (!client_) {
    auto connected = Client::connect(control_);
    if (!connected) return {EACCES, "bind of " + asked + " refused: " + connected.error().message};
    client_.emplace(std::move(*connected));
  }
  auto grant = client_->acquire_address(reinterpret_cast<const sockaddr*>(&address), length, type, v6only);
  if (!grant) return {EACCES, "bind of " + asked + " refused: " + grant.error().message};

  auto carried = carry_over(socket.get(), grant->fd.get(), defaults_);
  if (!carried) return {EACCES, "bind of " + asked + " refused: " + carried.error().describe()};

  seccomp_notif_addfd addfd{};
  addfd.id = id;
  addfd.flags = SECCOMP_ADDFD_FLAG_SETFD;
  addfd.srcfd = static_cast<std::uint32_t>(grant->fd.get());
  addfd.newfd = static_cast<std::uint32_t>(fd);
  addfd.newfd_flags = close_on_exec(tid, fd) ? O_CLOEXEC : 0;
  if (::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_ADDFD, &addfd) < 0) {
    const int err = errno;
    if (err == ENOENT) return {EACCES, {}};  // the program is gone
    return {EACCES, "bind of " + asked + " refused: cannot put socket \"" + grant->name +
                        "\" in place of fd " + std::to_string(fd) + ": " + std::strerror(err)};
  }
  struct stat st {};
  if (::fstat(grant->fd.get(), &st) == 0) granted_.insert(static_cast<std::uint64_t>(st.st_ino));
  return {};
}

bool BindServer::close_on_exec(pid_t tid, int fd) {
  // /proc/TID/fdinfo, opened once for the thread that binds (a program binds
  // from one thread, mostly): a directory descriptor of /proc stays with the
  // process it was opened for, so one kept for a thread that has exited
  // finds nothing and is opened afresh, for the thread that now has that id.
  if (tid == fdinfo_tid_ && fdinfo_dir_) {
    if (auto answer = close_on_exec_in(fdinfo_dir_.get(), fd)) return *answer;
  }
  const std::string path = "/proc/" + std::to_string(tid) + "/fdinfo";
  fdinfo_dir_.reset(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  fdinfo_tid_ = tid;
  if (!fdinfo_dir_) return true;  // the safer guess
  return close_on_exec_in(fdinfo_dir_.get(), fd).value_or(true);
}

BindServer::Answer BindServer::answer_listen(std::uint64_t /*id*/, int pidfd, const __u64 args[6]) {
  const int fd = static_cast<int>(args[0]);
  UniqueFd socket = take_descriptor(pidfd, fd);
  if (!socket) return {errno == EBADF ? EBADF : EPERM, {}};
  struct stat st {};
  if (::fstat(socket.get(), &st) != 0 || !S_ISSOCK(st.st_mode)) return {ENOTSOCK, {}};
  if (!granted_.contains(static_cast<std::uint64_t>(st.st_ino))) {
    return {EPERM, "listen(2) on fd " + std::to_string(fd) +
                       " refused: not a socket the broker granted (listening on an unbound socket binds a port the "
                       "kernel chooses)"};
  }
  // The broker's stream sockets listen already, with the policy's backlog.
  if (socket_int(socket.get(), SOL_SOCKET, SO_ACCEPTCONN) == 1) return {};
  return {EOPNOTSUPP, {}};  // a datagram socket: what listen(2) itself says
}

}  // namespace sockbroker::cli
