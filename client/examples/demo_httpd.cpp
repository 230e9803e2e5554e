// sockbroker-demo-httpd: the smallest socket-activated HTTP server, for the demo
// and the tests. It never binds: it serves on the listening sockets it inherits
// through LISTEN_FDS (sd_listen_fds(3)), as under systemd or `sockbroker run`.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

namespace {

// Tells the visitor who answered and shows the lockdown at work: this process
// cannot bind a port of its own.
std::string page(const std::string& socket_name) {
  int probe = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in any{};
  any.sin_family = AF_INET;
  any.sin_port = htons(8080);
  std::string bind_result = "bind(2) of port 8080 here: ";
  if (probe >= 0 && ::bind(probe, reinterpret_cast<sockaddr*>(&any), sizeof any) == 0) {
    bind_result += "allowed (no lockdown)";
  } else {
    bind_result += std::string("refused (") + std::strerror(errno) + ")";
  }
  if (probe >= 0) ::close(probe);
  return "hello from sockbroker-demo-httpd\n"
         "socket: " + socket_name + " (fd from LISTEN_FDS)\n"
         "uid: " + std::to_string(::getuid()) + ", gid: " + std::to_string(::getgid()) + "\n" +
         bind_result + "\n";
}

void answer(int client, const std::string& socket_name) {
  char request[2048];
  // One read is enough for a demo's GET; a slow client just gets the page anyway.
  (void)::recv(client, request, sizeof request, 0);
  std::string body = page(socket_name);
  std::string response = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                         std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  (void)::send(client, response.data(), response.size(), MSG_NOSIGNAL);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sockbroker-demo-httpd: answers HTTP on the sockets passed in LISTEN_FDS.\n"
               "Run it through `sockbroker run -s NAME -- sockbroker-demo-httpd`."};
  int count = 0;
  app.add_option("--count", count, "exit after answering this many requests (0: serve forever)");
  app.set_version_flag("--version", std::string("sockbroker-demo-httpd ") + SOCKBROKER_VERSION);
  CLI11_PARSE(app, argc, argv);

  char** names = nullptr;
  int n = ::sd_listen_fds_with_names(1, &names);
  if (n <= 0) {
    std::cerr << "sockbroker-demo-httpd: no sockets passed (LISTEN_FDS); start me with "
                 "`sockbroker run -s NAME -- sockbroker-demo-httpd`\n";
    return 64;
  }
  std::vector<pollfd> fds;
  std::vector<std::string> socket_names;
  for (int i = 0; i < n; ++i) {
    fds.push_back(pollfd{SD_LISTEN_FDS_START + i, POLLIN, 0});
    socket_names.emplace_back(names != nullptr ? names[i] : "unknown");
    if (names != nullptr) std::free(names[i]);
  }
  std::free(names);
  std::cerr << "sockbroker-demo-httpd: serving " << n << " socket(s) as uid " << ::getuid() << '\n';

  for (int served = 0; count == 0 || served < count;) {
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      std::perror("poll");
      return 1;
    }
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      int client = ::accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      answer(client, socket_names[i]);
      ::close(client);
      ++served;
    }
  }
  return 0;
}
