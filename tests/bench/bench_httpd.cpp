// sockbroker_bench_httpd: the data-path benchmark's server (item 7). One
// thread, epoll, HTTP/1.1 keep-alive, a fixed 2-byte body: the cheapest server
// that still does real request work, so that any cost of a brokered socket or
// of the lockdown filter shows. The same program serves a socket from
// LISTEN_FDS (brokered: `sockbroker run -s web -- sockbroker_bench_httpd`) or
// one it binds itself (`--port`), so the two runs differ only in the socket.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>

namespace {

constexpr std::string_view kResponse = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";

[[noreturn]] void fail(const std::string& what) {
  std::cerr << "sockbroker_bench_httpd: " << what << ": " << std::strerror(errno) << '\n';
  std::exit(1);
}

int self_bound(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail("socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) fail("bind 127.0.0.1:" + std::to_string(port));
  // The broker's backlog for the benchmark socket, so the two differ only in who bound.
  if (::listen(fd, 4096) != 0) fail("listen");
  return fd;
}

// Answers every complete request in what one read returned. wrk sends one
// request at a time per connection, so requests are never split in practice.
bool serve(int conn) {
  char buffer[8192];
  ssize_t n = ::recv(conn, buffer, sizeof buffer, 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
  if (n <= 0) return false;
  std::string_view data(buffer, static_cast<std::size_t>(n));
  std::string out;
  for (std::size_t at = data.find("\r\n\r\n"); at != std::string_view::npos; at = data.find("\r\n\r\n", at + 4)) {
    out += kResponse;
  }
  return out.empty() || ::send(conn, out.data(), out.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(out.size());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sockbroker_bench_httpd: a minimal keep-alive HTTP server for the data-path benchmark.\n"
               "Serves fd 3 from LISTEN_FDS (e.g. under `sockbroker run -s web --`), or with --port binds\n"
               "127.0.0.1:PORT itself. Every request gets \"200 ok\"."};
  int port = 0;
  app.add_option("--port", port, "bind 127.0.0.1:PORT instead of taking LISTEN_FDS")->check(CLI::Range(1, 65535));
  CLI11_PARSE(app, argc, argv);

  int listener = -1;
  if (port != 0) {
    listener = self_bound(port);
  } else {
    const char* fds = std::getenv("LISTEN_FDS");
    if (fds == nullptr || std::atoi(fds) < 1) {
      std::cerr << "sockbroker_bench_httpd: no LISTEN_FDS; run under `sockbroker run -s NAME --` or give --port\n";
      return 64;
    }
    listener = 3;
  }
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) fail("epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listener;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev) != 0) fail("epoll_ctl listener");
  epoll_event events[256];
  for (;;) {
    int n = ::epoll_wait(ep, events, 256, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == listener) {
        int conn = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (conn < 0) continue;  // the client gave up already, or EMFILE: wrk retries
        epoll_event add{};
        add.events = EPOLLIN;
        add.data.fd = conn;
        if (::epoll_ctl(ep, EPOLL_CTL_ADD, conn, &add) != 0) fail("epoll_ctl connection");
      } else if (!serve(fd)) {
        ::close(fd);
      }
    }
  }
}
