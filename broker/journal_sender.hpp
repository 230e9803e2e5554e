// Entries for systemd-journald, sent without ever waiting for it.
//
// sd_journal_sendv(3) encodes the same entries, but sends them on a blocking
// socket of its own that no caller can reach. Once journald's queue is full
// (journald stopped, or stalled on a slow disk; the queue holds
// net.unix.max_dgram_qlen entries, 10 by default and 512 under systemd), it
// waits in sendmsg(2), and with it the broker's one thread: every grant, every
// connection and the watchdog's ping. It also reports success when no journald
// listens (the entry is dropped), which an audit trail must not. So this is
// what systemd's PID 1 does for its own log (src/basic/log.c): a socket of its
// own and the native protocol (https://systemd.io/JOURNAL_NATIVE_PROTOCOL/),
// sent with MSG_DONTWAIT. A full queue is an error the caller keeps the entry
// for (audit.hpp: a failing trail), never a wait.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <sockbroker/fd.hpp>

namespace sockbroker::broker {

class JournalSender {
 public:
  // Where journald listens for native entries.
  static constexpr const char* kDefaultSocket = "/run/systemd/journal/socket";

  // The socket is made now; the path is looked up at every send, so that a
  // journald restarted (a new socket at the same path) is found again.
  [[nodiscard]] static Result<JournalSender> open(std::string_view path = kDefaultSocket);

  // One entry, each field "NAME=value" (NAME: [A-Z0-9_], not starting with
  // '_'; value: any bytes, newlines included). 0, or the errno: EAGAIN while
  // journald's queue is full, ENOENT or ECONNREFUSED while no journald listens,
  // EMSGSIZE for an entry larger than a datagram may be, EINVAL for a field
  // with no '=' or an empty name.
  [[nodiscard]] int send(const std::vector<std::string>& fields);

 private:
  JournalSender(UniqueFd socket, std::string path) : socket_(std::move(socket)), path_(std::move(path)) {}
  UniqueFd socket_;
  std::string path_;
  std::string datagram_;  // reused: one entry's bytes
};

}  // namespace sockbroker::broker
