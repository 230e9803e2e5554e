// Leases: which live process holds which grant. A grant is live while the
// process that received it lives; the broker watches each holder's pidfd and
// releases its leases the moment it exits, so max_grants counts only live
// grants and no reuse_port member outlives its worker in the broker's hands
// (connections hashed to an orphaned member would hang).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <sockbroker/fd.hpp>

#include "watched.hpp"

namespace sockbroker::broker {

struct Lease {
  std::string socket;      // the policy name
  std::uint64_t entry_id;  // the table entry it was granted from (a reload or revoke makes a new one)
  // The kernel socket the holder received, for a shared socket: the entry's
  // own, which revoke shuts down. Null for a reuse_port member, which the
  // broker does not keep (member_census.hpp): it leaves its group when its
  // holder closes it.
  std::shared_ptr<const UniqueFd> kernel_socket;
  // st_ino of the socket granted, recorded at grant time where the broker
  // keeps no reference of its own (a reuse_port member: what the census looks
  // for); otherwise 0, and the listing asks kernel_socket (a grant need not
  // pay an fstat(2) for a listing that may never come).
  std::uint64_t inode = 0;

  [[nodiscard]] bool member() const noexcept { return !kernel_socket && inode != 0; }

  // What `sockbroker list` shows and `sockbroker audit` matches against the
  // host's listeners; 0 if unknown.
  [[nodiscard]] std::uint64_t current_inode() const noexcept;
};

struct Holder {
  Holder(std::uint64_t t, pid_t p, uid_t u, UniqueFd fd) : token(t), pid(p), uid(u), pidfd(std::move(fd)) {}
  std::uint64_t token;  // what its epoll events carry (watched.hpp)
  pid_t pid;
  uid_t uid;
  UniqueFd pidfd;  // readable once the process has exited
  std::vector<Lease> leases;
  // Its start time (/proc/PID/stat, clock ticks since boot): with the pid,
  // what names the process to the next broker (handover.hpp). Read when a
  // handover first needs it; 0 until then.
  std::uint64_t start_time = 0;
};

// The start time of the process `pid` (field 22 of /proc/PID/stat), or 0.
[[nodiscard]] std::uint64_t process_start_time(pid_t pid) noexcept;

// Whether the process a pidfd pins still runs: a poll, which needs no
// privilege over it (pidfd_send_signal(pidfd, 0) would want CAP_KILL for
// another uid's). A zombie, or a poll that fails, counts as gone.
[[nodiscard]] bool process_alive(int pidfd) noexcept;

// st_ino of a descriptor (what /proc/PID/fd shows as "socket:[INODE]"); 0 if fstat fails.
[[nodiscard]] std::uint64_t socket_inode(int fd) noexcept;

class LeaseTable {
 public:
  // A new record for the live process behind session_pidfd (whose pid is
  // pid, and which has none: see live_record), holding a duplicate of the
  // pidfd. The caller watches holder->pidfd from now on.
  [[nodiscard]] Result<Holder*> new_record(pid_t pid, uid_t uid, int session_pidfd);

  // The record of pid if its process still lives. A record whose process has
  // exited but whose exit was not handled yet is removed and handed back in
  // `stale`, to be released first: a recycled pid never inherits leases.
  [[nodiscard]] Holder* live_record(pid_t pid, std::unique_ptr<Holder>& stale);
  [[nodiscard]] std::size_t holders_of(uid_t uid) const noexcept;

  // Records a grant to `holder`. The one place live grants are counted.
  void add_lease(Holder& holder, Lease lease);
  // Live grants of the table entry `entry_id`: leases whose holders live.
  [[nodiscard]] std::uint32_t live_grants(std::uint64_t entry_id) const noexcept;

  // Removes the holder (its process exited) and returns it with its leases,
  // which no longer count.
  [[nodiscard]] std::unique_ptr<Holder> remove(const Holder& holder);

  // Drops every lease granted from entry_id (revoked or replaced), returning
  // them with their holders' pids.
  struct Dropped {
    pid_t holder;
    Lease lease;
  };
  std::vector<Dropped> drop_entry(std::uint64_t entry_id);

  // Who hears that grants ended (a revoke, a reload that replaced a socket, a
  // repair that bound it afresh): SocketTable::shut_down calls grants_ended()
  // after it dropped their leases and *before* it shuts the socket down, so
  // a holder's watch connection holds the notice before the holder's
  // accept(2) can fail and its supervisor ask why. The server tells each
  // watching holder; without a listener (tests of the table) no one hears.
  using EndedListener = std::function<void(const std::string& socket, const std::vector<pid_t>& shut_down,
                                           const std::vector<pid_t>& members_held)>;
  void on_grants_ended(EndedListener listener) { grants_ended_ = std::move(listener); }
  void grants_ended(const std::string& socket, const std::vector<pid_t>& shut_down,
                    const std::vector<pid_t>& members_held) const {
    if (grants_ended_) grants_ended_(socket, shut_down, members_held);
  }

  // Drops the member leases of entry_id whose socket is not among `alive`
  // (their holders closed them; member_census.hpp). Returns how many.
  std::size_t drop_closed_members(std::uint64_t entry_id, const std::unordered_set<std::uint64_t>& alive);

  // A record for a process a previous broker leased to (handover.cpp), with
  // the pidfd the caller opened and checked. The caller watches it.
  [[nodiscard]] Holder* adopt_record(pid_t pid, uid_t uid, UniqueFd pidfd);

  [[nodiscard]] std::size_t holder_count() const noexcept { return holders_.size(); }
  template <class Fn>
  void for_each_holder(Fn&& fn) const {
    for (const auto& [pid, holder] : holders_) fn(*holder);
  }
  // Calls fn(lease) for every live lease; for listings.
  template <class Fn>
  void for_each_lease(Fn&& fn) const {
    for (const auto& [pid, holder] : holders_) {
      for (const Lease& lease : holder->leases) fn(lease);
    }
  }
  // Calls fn(holder) once for every holder of a lease of entry_id, in the
  // order of their first grant from it; fn(lease) for each such lease. An
  // index, not a walk of every holder: a listing asks for each entry of a
  // 10,000-socket table, a revoke or a repair for one entry among many.
  template <class Fn>
  void for_each_holder_of(std::uint64_t entry_id, Fn&& fn) const {
    if (auto it = by_entry_.find(entry_id); it != by_entry_.end()) {
      for (const Holder* holder : it->second.holders) fn(*holder);
    }
  }
  template <class Fn>
  void for_each_lease_of(std::uint64_t entry_id, Fn&& fn) const {
    for_each_holder_of(entry_id, [&](const Holder& holder) {
      for (const Lease& lease : holder.leases) {
        if (lease.entry_id == entry_id) fn(lease);
      }
    });
  }
  // The live holder an epoll event's token names, or nullptr if it is gone.
  [[nodiscard]] Holder* by_token(std::uint64_t token) const noexcept;

 private:
  void forget(const Holder& holder);
  // The leases of one table entry: how many are live, and who holds them,
  // each holder once.
  struct EntryLeases {
    std::uint32_t live = 0;
    std::vector<Holder*> holders;
  };
  // Takes `count` leases of entry_id off the index, and `holder` off the
  // entry's holders unless it keeps some of them.
  void unindex(const Holder& holder, std::uint64_t entry_id, std::uint32_t count, bool holder_keeps_some);

  std::unordered_map<pid_t, std::unique_ptr<Holder>> holders_;
  std::unordered_map<uid_t, std::size_t> per_uid_;
  std::unordered_map<std::uint64_t, Holder*> by_token_;
  std::unordered_map<std::uint64_t, EntryLeases> by_entry_;
  EndedListener grants_ended_;
  std::uint64_t next_serial_ = 1;
};

}  // namespace sockbroker::broker
