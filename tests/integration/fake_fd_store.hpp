// systemd's file descriptor store, played by a test: it listens on
// NOTIFY_SOCKET, keeps what the broker stores (FDSTORE=1, FDNAME=) and drops
// what it removes (FDSTOREREMOVE=1), then hands it all to the next broker as
// systemd does after `systemctl restart` or a crash with Restart=: LISTEN_FDS
// with LISTEN_FDNAMES (start_under).
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <gtest/gtest.h>

#include <cctype>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <sockbroker/fd.hpp>

#include "harness.hpp"

namespace sbtest {

using sockbroker::UniqueFd;

class FakeFdStore {
 public:
  explicit FakeFdStore(const TempDir& dir) : path_(dir.file("notify.sock")) {
    fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
    int on = 1;
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
  }
  [[nodiscard]] const std::string& path() const { return path_; }

  // Takes every message queued (waiting up to timeout_ms for the first).
  void drain(int timeout_ms = 200) {
    for (;;) {
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, timeout_ms) != 1) return;
      timeout_ms = 0;
      char text[4096];
      iovec iov{text, sizeof text - 1};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16) + CMSG_SPACE(sizeof(ucred))];
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      ssize_t n = ::recvmsg(fd_.get(), &msg, MSG_CMSG_CLOEXEC);
      if (n < 0) return;
      std::string message(text, static_cast<std::size_t>(n));
      std::vector<UniqueFd> fds;
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
          fds.emplace_back(fd);
        }
      }
      messages_.push_back(message);
      const std::string name = field(message, "FDNAME");
      if (message.find("FDSTOREREMOVE=1") != std::string::npos) {
        store_.erase(name);
      } else if (message.find("FDSTORE=1") != std::string::npos) {
        for (auto& fd : fds) store_[name].push_back(std::move(fd));
      }
    }
  }

  // name -> descriptors, as LISTEN_FDNAMES would list them.
  [[nodiscard]] std::vector<std::pair<std::string, int>> handed() const {
    std::vector<std::pair<std::string, int>> out;
    for (const auto& [name, fds] : store_) {
      for (const auto& fd : fds) out.emplace_back(name, fd.get());
    }
    return out;
  }
  [[nodiscard]] std::size_t count(const std::string& name) const {
    auto it = store_.find(name);
    return it == store_.end() ? 0 : it->second.size();
  }
  // The broker's sockets: "s<id>".
  [[nodiscard]] std::size_t count_sockets() const {
    std::size_t n = 0;
    for (const auto& [name, fds] : store_) {
      const bool socket = name.size() > 1 && name[0] == 's' && std::isdigit(static_cast<unsigned char>(name[1]));
      n += socket ? fds.size() : 0;
    }
    return n;
  }
  [[nodiscard]] std::string names() const {
    std::string out;
    for (const auto& [name, fds] : store_) out += name + "(" + std::to_string(fds.size()) + ") ";
    return out;
  }

  // The first descriptor stored under `name`, or -1.
  [[nodiscard]] int first(const std::string& name) const {
    auto it = store_.find(name);
    return it == store_.end() || it->second.empty() ? -1 : it->second.front().get();
  }

 private:
  static std::string field(const std::string& message, const std::string& key) {
    auto at = message.find(key + "=");
    if (at == std::string::npos) return "";
    auto end = message.find('\n', at);
    return message.substr(at + key.size() + 1, end == std::string::npos ? std::string::npos : end - at - key.size() - 1);
  }
  std::string path_;
  UniqueFd fd_;
  std::vector<std::string> messages_;
  std::map<std::string, std::vector<UniqueFd>> store_;
};

// As systemd starts it: with NOTIFY_SOCKET naming the store.
inline std::optional<Broker> start_under(const FakeFdStore& store, const TempDir& dir, const std::string& policy,
                                         const std::vector<std::string>& args = {},
                                         const std::vector<std::pair<std::string, int>>& handed = {},
                                         const std::string& binary = SOCKBROKERD_PATH) {
  ScopedEnv notify("NOTIFY_SOCKET", store.path());
  return Broker::start(dir, policy, args, handed, binary);
}

}  // namespace sbtest
