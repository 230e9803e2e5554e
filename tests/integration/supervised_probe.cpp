// `integration_tests --supervised-probe PORT DENIED_PORT UNIX_PATH UDP_PORT`:
// run under `sockbroker run --` (supervised), it makes the calls a server
// makes and prints what each returned, as one JSON object on stdout, for
// supervisor_test.cpp to check. PORT, UNIX_PATH and UDP_PORT are policy
// sockets; DENIED_PORT is not.
//
// `integration_tests --threaded-bind-probe PORT DENIED_PORT`: the same for a
// server whose bind(2) and listen(2) come from a thread other than its first
// (a listener thread, Go's or Java's runtime).
#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

namespace {

nlohmann::json outcome(int rc) { return rc == 0 ? nlohmann::json("ok") : nlohmann::json(std::strerror(errno)); }

sockaddr_in loopback(int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

int int_option(int fd, int level, int name) {
  int value = -1;
  socklen_t length = sizeof value;
  return ::getsockopt(fd, level, name, &value, &length) == 0 ? value : -1;
}

// Serves one connection on fd, so the test sees the socket works; 0 once it has.
int serve_one_connection(int fd) {
  for (int i = 0; i < 500; ++i) {
    int client = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (client >= 0) {
      (void)!::write(client, "probe\n", 6);
      ::close(client);
      return 0;
    }
    ::usleep(10000);
  }
  return 3;
}

}  // namespace

int supervised_probe(int argc, char** argv) {
  if (argc < 6) return 64;
  const int port = std::atoi(argv[2]);
  const int denied_port = std::atoi(argv[3]);
  const std::string unix_path = argv[4];
  const int udp_port = std::atoi(argv[5]);
  nlohmann::json out;

  // What a server does before it binds, then the bind of a policy address.
  int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  out["reuseaddr"] = outcome(::setsockopt(tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
  out["reuseport"] = outcome(::setsockopt(tcp, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one));
  (void)::setsockopt(tcp, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  (void)::fcntl(tcp, F_SETFL, ::fcntl(tcp, F_GETFL) | O_NONBLOCK);
  sockaddr_in address = loopback(port);
  out["bind"] = outcome(::bind(tcp, reinterpret_cast<sockaddr*>(&address), sizeof address));
  sockaddr_in bound{};
  socklen_t length = sizeof bound;
  ::getsockname(tcp, reinterpret_cast<sockaddr*>(&bound), &length);
  out["bound_port"] = ntohs(bound.sin_port);
  out["nodelay"] = int_option(tcp, IPPROTO_TCP, TCP_NODELAY);
  out["nonblock"] = (::fcntl(tcp, F_GETFL) & O_NONBLOCK) != 0;
  out["cloexec"] = (::fcntl(tcp, F_GETFD) & FD_CLOEXEC) != 0;
  out["listen"] = outcome(::listen(tcp, 16));
  out["accepting"] = int_option(tcp, SOL_SOCKET, SO_ACCEPTCONN);
  out["bind_again"] = outcome(::bind(tcp, reinterpret_cast<sockaddr*>(&address), sizeof address));

  // What the policy does not have: refused as an unprivileged low-port bind is.
  int other = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in denied = loopback(denied_port);
  out["bind_denied"] = outcome(::bind(other, reinterpret_cast<sockaddr*>(&denied), sizeof denied));
  int ephemeral = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in any_port = loopback(0);
  out["bind_port_0"] = outcome(::bind(ephemeral, reinterpret_cast<sockaddr*>(&any_port), sizeof any_port));
  // listen(2) on an unbound socket would bind a port the kernel picks.
  int unbound = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  out["listen_unbound"] = outcome(::listen(unbound, 1));

  // Netlink opens no port: getifaddrs binds one.
  int netlink = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  sockaddr_nl nl{};
  nl.nl_family = AF_NETLINK;
  out["bind_netlink"] = outcome(::bind(netlink, reinterpret_cast<sockaddr*>(&nl), sizeof nl));
  ifaddrs* list = nullptr;
  out["getifaddrs"] = outcome(::getifaddrs(&list));
  if (list != nullptr) ::freeifaddrs(list);

  // A Unix path and a datagram socket of the policy.
  int unix_socket = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::strncpy(sun.sun_path, unix_path.c_str(), sizeof sun.sun_path - 1);
  out["bind_unix"] = outcome(::bind(unix_socket, reinterpret_cast<sockaddr*>(&sun), sizeof sun));
  sockaddr_un unix_bound{};
  length = sizeof unix_bound;
  ::getsockname(unix_socket, reinterpret_cast<sockaddr*>(&unix_bound), &length);
  out["unix_name"] = std::string(unix_bound.sun_path);
  int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in udp_address = loopback(udp_port);
  out["bind_udp"] = outcome(::bind(udp, reinterpret_cast<sockaddr*>(&udp_address), sizeof udp_address));
  out["listen_udp"] = outcome(::listen(udp, 1));

  std::cout << out.dump() << std::endl;
  return serve_one_connection(tcp);
}

int threaded_bind_probe(int argc, char** argv) {
  if (argc < 4) return 64;
  const int port = std::atoi(argv[2]);
  const int denied_port = std::atoi(argv[3]);
  nlohmann::json out;
  int tcp = -1;
  // errno is the thread's own, so each outcome is read where its call ran.
  std::thread listener([&] {
    tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in address = loopback(port);
    out["bind"] = outcome(::bind(tcp, reinterpret_cast<sockaddr*>(&address), sizeof address));
    sockaddr_in bound{};
    socklen_t length = sizeof bound;
    ::getsockname(tcp, reinterpret_cast<sockaddr*>(&bound), &length);
    out["bound_port"] = ntohs(bound.sin_port);
    out["listen"] = outcome(::listen(tcp, 16));

    int other = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in denied = loopback(denied_port);
    out["bind_denied"] = outcome(::bind(other, reinterpret_cast<sockaddr*>(&denied), sizeof denied));
    int unbound = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    out["listen_unbound"] = outcome(::listen(unbound, 1));
  });
  listener.join();
  std::cout << out.dump() << std::endl;
  return serve_one_connection(tcp);
}
