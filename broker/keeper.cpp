#include "keeper.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

namespace sockbroker::broker {
namespace {

// Descriptors per message: SCM_MAX_FD is 253.
constexpr std::size_t kPerMessage = 250;
constexpr std::size_t kMaxMessage = 64 * 1024;

// One message: a kind byte, then newline-separated names, one per descriptor.
Status send_batch(int sock, char kind, const std::string& names, const int* fds, std::size_t count) {
  std::string payload(1, kind);
  payload += names;
  iovec iov{payload.data(), payload.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kPerMessage)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (count != 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * count);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * count);
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(payload.size())) return errno_error("sendmsg (keeper)");
  return Ok{};
}

Status send_items(int sock, const std::vector<std::pair<std::string, int>>& items) {
  for (std::size_t at = 0; at < items.size(); at += kPerMessage) {
    const std::size_t count = std::min(kPerMessage, items.size() - at);
    std::string names;
    std::vector<int> fds;
    for (std::size_t i = at; i < at + count; ++i) {
      names += items[i].first + "\n";
      fds.push_back(items[i].second);
    }
    if (auto s = send_batch(sock, 'H', names, fds.data(), fds.size()); !s) return s;
  }
  return send_batch(sock, 'C', "", nullptr, 0);
}

// One message in: its kind (0 at the end of the stream, -1 on error), names
// and descriptors appended.
int receive_batch(int sock, std::vector<HandoverItem>& into) {
  std::string payload(kMaxMessage, '\0');
  iovec iov{payload.data(), payload.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 253)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -1;
  if (n == 0) return 0;
  std::vector<int> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds.push_back(fd);
    }
  }
  payload.resize(static_cast<std::size_t>(n));
  std::size_t start = 1, taken = 0;
  for (std::size_t end; taken < fds.size() && (end = payload.find('\n', start)) != std::string::npos; start = end + 1) {
    into.push_back(HandoverItem{payload.substr(start, end - start), UniqueFd(fds[taken++])});
  }
  for (; taken < fds.size(); ++taken) ::close(fds[taken]);  // unnamed: not ours to keep
  return static_cast<unsigned char>(payload[0]);
}

sockaddr_un keeper_address(socklen_t* length) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path + 1, kKeeperName, sizeof kKeeperName - 1);
  *length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + sizeof kKeeperName - 1);
  return address;
}

// Holds copies until the broker says to let go; rescues them if it dies.
[[noreturn]] void run_keeper(int sock) {
  ::prctl(PR_SET_NAME, "sb-keeper", 0, 0, 0);
  sigset_t unblocked;
  sigemptyset(&unblocked);
  ::sigprocmask(SIG_SETMASK, &unblocked, nullptr);
  cap_t none = ::cap_init();
  if (none == nullptr || ::cap_set_proc(none) != 0) ::_exit(73);
  ::cap_free(none);
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ::_exit(74);

  std::vector<HandoverItem> held;
  bool committed = false;
  for (;;) {
    std::vector<HandoverItem> batch;
    const int kind = receive_batch(sock, batch);
    if (kind == 'H') {
      for (auto& item : batch) held.push_back(std::move(item));
      continue;
    }
    if (kind == 'C') {
      committed = true;
      (void)send_batch(sock, 'c', "", nullptr, 0);
      continue;
    }
    if (kind == 'R') {
      held.clear();
      committed = false;
      (void)send_batch(sock, 'r', "", nullptr, 0);
      continue;
    }
    if (kind <= 0) break;  // the broker's process is gone (or the socket broke)
  }
  if (!committed || held.empty()) ::_exit(0);

  // The image died during an upgrade: hand everything to the next broker.
  ::close(sock);
  UniqueFd rescue(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  socklen_t length = 0;
  sockaddr_un address = keeper_address(&length);
  if (!rescue || ::bind(rescue.get(), reinterpret_cast<sockaddr*>(&address), length) != 0 ||
      ::listen(rescue.get(), 4) != 0) {
    const std::string line = std::string("sockbrokerd keeper: cannot offer the ports of a failed upgrade on @") +
                             kKeeperName + ": " + std::strerror(errno) + "; holding them until killed\n";
    (void)!::write(STDERR_FILENO, line.data(), line.size());
    for (;;) ::pause();
  }
  const std::string line = std::string("sockbrokerd keeper: the upgraded image died; holding ") +
                           std::to_string(held.size()) + " descriptor(s) for the next sockbrokerd on @" + kKeeperName +
                           "\n";
  (void)!::write(STDERR_FILENO, line.data(), line.size());
  for (;;) {
    UniqueFd peer(::accept4(rescue.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!peer) continue;
    ucred cred{};
    socklen_t size = sizeof cred;
    if (::getsockopt(peer.get(), SOL_SOCKET, SO_PEERCRED, &cred, &size) != 0 || cred.uid != 0) continue;
    std::vector<std::pair<std::string, int>> items;
    for (const auto& item : held) items.emplace_back(item.name, item.fd.get());
    if (send_items(peer.get(), items)) {
      char ack;
      (void)::recv(peer.get(), &ack, 1, 0);  // the broker holds them once it answers (or hangs up)
      ::_exit(0);
    }
  }
}

}  // namespace

Result<Keeper> Keeper::start() {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) return errno_error("socketpair (keeper)");
  UniqueFd ours(pair[0]), theirs(pair[1]);
  const pid_t child = ::fork();
  if (child < 0) return errno_error("fork (keeper)");
  if (child == 0) {
    ours.reset();
    // Nothing of the broker's but its socket (and stderr, to say what it does).
    if (theirs.get() != 3 && ::dup2(theirs.get(), 3) < 0) ::_exit(72);
    ::syscall(SYS_close_range, 4U, ~0U, 0U);
    if (theirs.get() != 3) (void)theirs.release();
    run_keeper(3);
  }
  return Keeper(std::move(ours));
}

Status Keeper::hold(const std::vector<std::pair<std::string, int>>& items) {
  if (auto s = send_items(socket_.get(), items); !s) return s;
  std::vector<HandoverItem> none;
  if (receive_batch(socket_.get(), none) != 'c') return Error{0, EPIPE, "the keeper did not confirm"};
  return Ok{};
}

Status Keeper::release() {
  if (auto s = send_batch(socket_.get(), 'R', "", nullptr, 0); !s) return s;
  std::vector<HandoverItem> none;
  if (receive_batch(socket_.get(), none) != 'r') return Error{0, EPIPE, "the keeper did not confirm"};
  return Ok{};
}

std::vector<HandoverItem> take_from_keeper(spdlog::logger& log) {
  std::vector<HandoverItem> items;
  UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!sock) return items;
  socklen_t length = 0;
  sockaddr_un address = keeper_address(&length);
  if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&address), length) != 0) return items;
  ucred cred{};
  socklen_t size = sizeof cred;
  if (::getsockopt(sock.get(), SOL_SOCKET, SO_PEERCRED, &cred, &size) != 0 || cred.uid != 0) {
    log.warn("@{} is held by uid {}, not a keeper of sockbrokerd's: ignored", kKeeperName, cred.uid);
    return items;
  }
  // A keeper answers at once; a stalled one is not waited for.
  for (;;) {
    pollfd p{sock.get(), POLLIN, 0};
    if (::poll(&p, 1, 2000) != 1) {
      log.warn("the keeper on @{} stopped answering; binding afresh", kKeeperName);
      return {};
    }
    const int kind = receive_batch(sock.get(), items);
    if (kind == 'C') break;
    if (kind != 'H') return {};
  }
  (void)::send(sock.get(), "k", 1, MSG_NOSIGNAL);
  log.info("took {} descriptor(s) from the keeper of an upgrade that failed (pid {})", items.size(), cred.pid);
  return items;
}

}  // namespace sockbroker::broker
