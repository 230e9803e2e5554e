// Getting rid of descriptors a client chose, without ever waiting on them.
//
// Closing the last reference to a file can sleep for as long as the file
// wants: a TCP socket with SO_LINGER {1, 3600} and a send queue that cannot
// drain holds close(2) in sk_stream_wait_close for an hour, and a FUSE or NFS
// file waits on its server. Any local user can attach such a descriptor to a
// request (SCM_RIGHTS), or leave it queued on a connection the broker closes
// (closing a Unix socket releases what is queued on it). Released on the
// event loop, it would freeze every client and SIGTERM with them.
//
// So the loop never drops the last reference to anything a client sent: it
// owns every descriptor that arrives (the receive buffer holds as many as one
// datagram can carry, SCM_MAX_FD), and hands those, and connections that may
// still have some queued, to the disposer: a separate process, forked before
// the broker confines itself, with no capabilities and its own seccomp
// allow-list. Sending a descriptor over a socket never blocks on the file,
// and the broker's close after the send is not the last reference: the
// disposer holds the descriptor from then on, and releases nothing before
// the broker confirms it has closed its copies. The disposer releases each
// batch by exiting:
// it forks its successor, which closes its own copies (still not the last)
// and carries on, and the old process exits holding the last references. The
// kernel never lingers for an exiting process (inet_release: PF_EXITING), so
// not even the disposer waits on a lingering socket; a file whose release
// waits on a server (FUSE) holds only the old process that is exiting.
//
// Namespace descriptors (what a netns = "request" acquire legitimately sends)
// are recognised without touching the file (readlink of /proc/self/fd/N: no
// file system callback) and closed on the loop: releasing a namespace
// reference never sleeps.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include <sockbroker/fd.hpp>

#include "logger.hpp"

namespace sockbroker::broker {

// What a received descriptor is, read from its /proc/self/fd link without
// calling into the file's file system: "net" for a network namespace ("net:[N]"),
// another namespace kind, or a description of anything else ("a socket").
struct DescriptorKind {
  bool is_namespace = false;
  std::string namespace_type;  // "net", "mnt", ... when is_namespace
  std::uint64_t inode = 0;     // the namespace's inode when is_namespace
  std::string description;     // for messages: "a network namespace", "a socket", "a file", ...
};
[[nodiscard]] DescriptorKind classify_descriptor(int fd);

class Disposer {
 public:
  // Forks the disposer process. Call before the broker confines itself (it
  // needs fork) and while the broker has one thread.
  [[nodiscard]] static Result<Disposer> start();
  // The disposer a previous image of the broker started (an upgrade in place).
  [[nodiscard]] static Disposer adopt(UniqueFd socket) { return Disposer(std::move(socket)); }
  // Its socket, to hand on across an upgrade in place.
  [[nodiscard]] int socket() const noexcept { return socket_.get(); }

  Disposer(Disposer&&) noexcept = default;
  Disposer& operator=(Disposer&&) noexcept = default;
  ~Disposer();

  // Takes a descriptor a client chose, or a control connection that may still
  // hold some. Never blocks; the descriptor is sent on at the next flush().
  void take(UniqueFd fd);
  // Every received descriptor: namespaces are closed here, the rest taken.
  void take_received(std::span<UniqueFd> fds);

  // Sends what was taken (non-blocking). The loop calls it before it waits;
  // while backlogged() it wakes again soon to retry.
  void flush(spdlog::logger& log);
  [[nodiscard]] bool backlogged() const noexcept { return !queued_.empty() || confirm_pending_; }
  // Descriptors the broker holds on the disposer's behalf right now.
  [[nodiscard]] std::size_t queued() const noexcept { return queued_.size(); }

  // For tests of the fallback: the disposer process is gone, so descriptors
  // are kept (up to a bound) rather than closed on the loop.
  [[nodiscard]] bool alive() const noexcept { return alive_; }

 private:
  explicit Disposer(UniqueFd socket) : socket_(std::move(socket)) {}

  UniqueFd socket_;
  std::vector<UniqueFd> queued_;
  bool confirm_pending_ = false;  // sent descriptors whose closing the disposer has not been told of
  bool alive_ = true;
};

}  // namespace sockbroker::broker
