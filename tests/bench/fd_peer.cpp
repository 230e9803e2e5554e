#include "fd_peer.hpp"

#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "bench_env.hpp"

namespace sbbench {
namespace {

// Ports of the baseline sockets: beside the broker's 80/81, never the same.
constexpr std::uint16_t kSharedPort = 90;
constexpr std::uint16_t kReuseportPort = 91;

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

// The same calls socket_factory makes for a stream member: socket, SO_REUSEPORT, bind, listen.
int make_listener(std::uint16_t port, bool reuseport) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  if (reuseport && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) die("SO_REUSEPORT");
  sockaddr_in address = loopback(port);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) die("bind baseline port");
  if (::listen(fd, 511) != 0) die("listen");
  return fd;
}

void send_with_fd(int conn, int fd) {
  char reply[kMessageBytes] = {};
  iovec iov{reply, sizeof reply};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
  if (::sendmsg(conn, &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof reply)) die("peer sendmsg");
}

// One request in, one reply with a descriptor out. false once the client hung up.
bool serve_one(int conn, PeerWork work, int shared, std::vector<int>& members) {
  char request[256];
  ssize_t n = ::recv(conn, request, sizeof request, 0);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  if (n <= 0) return false;
  if (work == PeerWork::shared) {
    send_with_fd(conn, shared);
  } else {
    int member = make_listener(kReuseportPort, true);
    send_with_fd(conn, member);
    members.push_back(member);
  }
  return true;
}

}  // namespace

PairPeer start_pair_peer(PeerWork work, int cpu) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) die("socketpair");
  pid_t pid = spawn([&] {
    ::close(pair[0]);
    pin_self(cpu);
    int shared = work == PeerWork::shared ? make_listener(kSharedPort, false) : -1;
    std::vector<int> members;
    while (serve_one(pair[1], work, shared, members)) {
    }
    return 0;
  });
  ::close(pair[1]);
  return PairPeer{pid, pair[0]};
}

void stop_pair_peer(PairPeer& peer) {
  if (peer.fd >= 0) ::close(peer.fd);
  peer.fd = -1;
  if (peer.pid > 0) reap(peer.pid, "baseline peer");
  peer.pid = -1;
}

namespace {
int unix_listener(const std::string& path) {
  int listener = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (listener < 0) die("socket(AF_UNIX)");
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  ::unlink(path.c_str());
  if (::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) die("bind " + path);
  if (::listen(listener, 4096) != 0) die("listen " + path);
  // uid 65534 clients connect to it too.
  if (::chmod(path.c_str(), 0666) != 0) die("chmod " + path);
  return listener;
}
}  // namespace

pid_t start_listening_peer(const std::string& path, int cpu) {
  int listener = unix_listener(path);
  pid_t pid = spawn([&] {
    pin_self(cpu);
    int shared = make_listener(kSharedPort, false);
    std::vector<int> unused;
    for (;;) {
      int conn = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) {
        if (errno == EINTR) continue;
        die("peer accept4");
      }
      (void)serve_one(conn, PeerWork::shared, shared, unused);
      ::close(conn);
    }
    return 0;
  });
  ::close(listener);
  return pid;
}

pid_t start_server_peer(const std::string& path) {
  int listener = unix_listener(path);
  pid_t pid = spawn([&] {
    int shared = make_listener(kSharedPort, false);
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = listener;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev) != 0) die("epoll_ctl");
    std::vector<int> unused;
    epoll_event events[64];
    for (;;) {
      int n = ::epoll_wait(ep, events, 64, -1);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) die("epoll_wait");
      for (int i = 0; i < n; ++i) {
        int fd = events[i].data.fd;
        if (fd == listener) {
          int conn = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
          if (conn < 0) continue;
          epoll_event add{};
          add.events = EPOLLIN;
          add.data.fd = conn;
          if (::epoll_ctl(ep, EPOLL_CTL_ADD, conn, &add) != 0) die("epoll_ctl conn");
        } else if (!serve_one(fd, PeerWork::shared, shared, unused)) {
          ::close(fd);  // closing removes it from the epoll set
        }
      }
    }
    return 0;
  });
  ::close(listener);
  return pid;
}

void round_trip(int fd) {
  char request[kMessageBytes] = {};
  if (::send(fd, request, sizeof request, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof request)) die("send");
  char reply[256];
  iovec iov{reply, sizeof reply};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  // The same flags the client library uses: close-on-exec on arrival.
  if (::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC) <= 0) die("recvmsg");
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  if (cmsg == nullptr || cmsg->cmsg_type != SCM_RIGHTS) {
    errno = EPROTO;
    die("reply without a descriptor");
  }
  int received = -1;
  std::memcpy(&received, CMSG_DATA(cmsg), sizeof received);
  ::close(received);
}

void connect_round_trip(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket(AF_UNIX)");
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) die("connect " + path);
  round_trip(fd);
  ::close(fd);
}

}  // namespace sbbench
