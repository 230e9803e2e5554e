// systemd's file descriptor store (FileDescriptorStoreMax= in the unit): the
// broker keeps in it every socket it bound, its control socket and a "state"
// memfd (handover.hpp names them), so that `systemctl restart` and a crash
// with Restart= hand them back (LISTEN_FDS) and no port is ever let go.
//
// What survives what, on systemd 252 (Debian 12): the store lives as long as
// the unit is not stopped: a restart (systemctl restart, Restart= after a
// crash or a watchdog kill) keeps it; `systemctl stop` then `start` empties it
// (every socket is bound afresh, and running holders make shared ones fail
// until they exit: the retry schedule takes over).
//
// The store is kept in step lazily: Server marks it stale after anything that
// may change a socket or a lease, and sync() pushes the difference at most
// every kSyncInterval (and at once before the broker stops), so a burst of
// grants costs one pass, not one per grant.
//
// While the audit trail fails (a full disk, a stalled journald), the lines
// not yet written are kept there too ("audit_unwritten", a memfd), so that a
// restart or a crash hands them to the next broker, which writes them before
// its own: a crash loses at most the last second's.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <sockbroker/fd.hpp>

#include "broker_state.hpp"
#include "logger.hpp"

namespace sockbroker::broker {

class Audit;

class FdStore {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kSyncInterval{50};
  static constexpr std::chrono::milliseconds kAuditKeepInterval{1000};
  static constexpr const char* kAuditItem = "audit_unwritten";

  // Whether systemd listens (NOTIFY_SOCKET): without it open() makes nothing,
  // and what was handed over need not be looked at for the store.
  [[nodiscard]] static bool notify_socket_set() noexcept;
  // Enabled when systemd listens (NOTIFY_SOCKET) and the unit allows a
  // store (FDSTORE is refused otherwise: the first store says so, once).
  // already_stored: what systemd handed back (name -> inode), which its store
  // still holds; state_memfd: the handed-back "state", rewritten in place
  // (systemd holds the same open file), or invalid to make and store one;
  // audit_memfd: the handed-back "audit_unwritten" (whose lines the caller
  // has read), rewritten in place while the trail fails, removed once it works.
  [[nodiscard]] static std::optional<FdStore> open(spdlog::logger& log,
                                                   const std::map<std::string, std::uint64_t>& already_stored,
                                                   UniqueFd state_memfd, UniqueFd audit_memfd = UniqueFd());
  // The inode of a descriptor, as already_stored wants it (0: not a file).
  [[nodiscard]] static std::uint64_t inode_of(int fd) noexcept;

  // The control socket the broker made, stored once ("control"), unless
  // systemd handed it (a socket unit's, or the store's).
  void store_control(int fd, spdlog::logger& log);
  // Something may have changed: the next sync() compares.
  void mark_stale() noexcept { stale_ = true; }
  // When the next sync() is due (nullopt: nothing to do).
  [[nodiscard]] std::optional<Clock::time_point> deadline() const noexcept;
  // Stores what is new, removes what is gone and rewrites the state, if
  // stale and due (or `now_anyway`, before stopping).
  void sync(BrokerState& state, spdlog::logger& log, bool now_anyway = false);

  // While the trail fails: its unwritten lines into the store, at most every
  // kAuditKeepInterval unless `now_anyway` (before stopping or upgrading).
  // Once it works again (they are written): out of the store, or the next
  // broker would write them twice. Called every turn: cheap when all is well.
  void keep_unwritten_audit(const Audit& audit, spdlog::logger& log, bool now_anyway = false);
  // The stored "audit_unwritten" memfd (an upgrade in place hands it on), or -1.
  [[nodiscard]] int unwritten_audit_memfd() const noexcept { return audit_memfd_.get(); }

  [[nodiscard]] std::size_t stored() const noexcept { return stored_.size(); }
  [[nodiscard]] bool holds(const std::string& name) const { return stored_.contains(name); }
  // The stored state memfd (an upgrade in place hands it on, rewritten).
  [[nodiscard]] int state_memfd() const noexcept { return state_memfd_.get(); }

 private:
  explicit FdStore(UniqueFd state_memfd) : state_memfd_(std::move(state_memfd)) {}
  bool store(const std::string& name, int fd, spdlog::logger& log);
  void remove(const std::string& name, spdlog::logger& log);

  UniqueFd state_memfd_;
  UniqueFd audit_memfd_;  // stored while the audit trail fails
  Clock::time_point last_audit_keep_{};
  std::map<std::string, std::uint64_t> stored_;  // name -> the stored socket's inode
  bool stale_ = true;
  bool refused_ = false;  // systemd refused a store: stop trying
  Clock::time_point last_sync_{};
};

}  // namespace sockbroker::broker
