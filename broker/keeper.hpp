// The keeper: what saves the ports when an upgrade in place goes wrong
// without systemd. An upgrade executes a new image in the broker's own
// process; if that image dies at start (a broken build), every descriptor of
// the process goes with it. So, just before the exec, the broker gives the
// keeper (a process it forked at start, before confining itself) a copy of
// everything it hands over; the new image, once it holds them, tells the
// keeper to let go.
//
// If instead the broker's end of the keeper's socket closes while the keeper
// holds copies, the image died: the keeper keeps the ports bound and waits
// on the abstract socket "@sockbrokerd-keeper" (in the broker's network
// namespace) for the next sockbrokerd, which takes everything from it at start
// when nothing else was handed over (and only from a keeper running as root).
// Under systemd the file descriptor store does the same, and the keeper is a
// second line.
//
// The keeper runs as root without any capability, with no_new_privs; it
// touches nothing but the descriptors it holds.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <sockbroker/fd.hpp>

#include "handover_item.hpp"
#include "logger.hpp"

namespace sockbroker::broker {

inline constexpr char kKeeperName[] = "sockbrokerd-keeper";  // abstract

class Keeper {
 public:
  // Forks the keeper. Call before confinement, with one thread.
  [[nodiscard]] static Result<Keeper> start();
  // The keeper a previous image started (an upgrade in place).
  [[nodiscard]] static Keeper adopt(UniqueFd socket) { return Keeper(std::move(socket)); }

  [[nodiscard]] int socket() const noexcept { return socket_.get(); }

  // Copies of `items` (name, descriptor) to hold: blocking, confirmed.
  [[nodiscard]] Status hold(const std::vector<std::pair<std::string, int>>& items);
  // Lets go of what it holds (the new image has it, or the exec failed).
  [[nodiscard]] Status release();

 private:
  explicit Keeper(UniqueFd socket) : socket_(std::move(socket)) {}
  UniqueFd socket_;
};

// What a keeper rescued after an image died: taken from "@sockbrokerd-keeper"
// if one is there and runs as root; empty otherwise.
[[nodiscard]] std::vector<HandoverItem> take_from_keeper(spdlog::logger& log);

}  // namespace sockbroker::broker
