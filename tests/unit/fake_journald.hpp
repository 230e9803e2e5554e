// A datagram socket bound at a fresh path, standing in for journald's
// (/run/systemd/journal/socket): what the broker sends there can be read
// back, and a test can fill its queue to play a journald that is behind.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include <sockbroker/fd.hpp>

namespace sbtest {

class FakeJournald {
 public:
  FakeJournald() {
    char dir[] = "/tmp/sockbroker-journal-XXXXXX";
    if (::mkdtemp(dir) == nullptr) return;
    dir_ = dir;
    path_ = dir_ + "/socket";
    socket_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (::bind(socket_.get(), reinterpret_cast<const sockaddr*>(&address()), sizeof(sockaddr_un)) != 0) socket_.reset();
  }
  ~FakeJournald() {
    socket_.reset();
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  FakeJournald(const FakeJournald&) = delete;
  FakeJournald& operator=(const FakeJournald&) = delete;

  [[nodiscard]] bool ok() const { return socket_.get() >= 0; }
  [[nodiscard]] const std::string& path() const { return path_; }
  // One entry's bytes, or "" if none is queued.
  std::string receive() {
    char buffer[65536];
    const ssize_t n = ::recv(socket_.get(), buffer, sizeof buffer, 0);
    return n > 0 ? std::string(buffer, static_cast<std::size_t>(n)) : std::string();
  }
  void close() { socket_.reset(); }
  // Queues one-byte datagrams ("x") until the queue (net.unix.max_dgram_qlen
  // entries) is full: until a socket that has sent nothing yet cannot send
  // one (one socket alone may run out of its own send buffer first). Returns
  // how many were queued, or -1.
  int fill() {
    int queued = 0;
    for (int senders = 0; senders < 256; ++senders) {
      sockbroker::UniqueFd filler(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
      if (!filler) return -1;
      int sent = 0;
      while (::sendto(filler.get(), "x", 1, MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&address()),
                      sizeof(sockaddr_un)) == 1) {
        ++sent;
      }
      if (errno != EAGAIN) return -1;
      if (sent == 0) return queued;
      queued += sent;
    }
    return -1;
  }

 private:
  const sockaddr_un& address() {
    address_.sun_family = AF_UNIX;
    std::strncpy(address_.sun_path, path_.c_str(), sizeof address_.sun_path - 1);
    return address_;
  }

  std::string dir_, path_;
  sockaddr_un address_{};
  sockbroker::UniqueFd socket_;
};

}  // namespace sbtest
