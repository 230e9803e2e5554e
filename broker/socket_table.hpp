// The sockets the broker holds, by policy name, bound at start-up so ports stay
// held while services are down.
//
// A shared entry has one kernel socket every grant duplicates. A reuse_port
// entry makes a new member per grant; for stream sockets it keeps one bound,
// never-listening member so the port stays held between workers (connections
// are only hashed to listening members) and, once it has granted, the next
// member bound ahead in the same state (new_member), and for datagram sockets none at all
// (a bound UDP member receives its share of datagrams at once). A netns =
// "request" entry holds nothing: each grant is bound in the requester's
// namespace and owned by the holder alone (netns_binder.hpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <sockbroker/fd.hpp>

#include "audit.hpp"
#include "lease_table.hpp"
#include "logger.hpp"
#include "policy.hpp"
#include "socket_factory.hpp"

namespace sockbroker::broker {

struct TableEntry {
  std::uint64_t id = 0;  // new for every (re)bind: leases remember which socket they got
  policy::SocketSpec spec;
  std::shared_ptr<const UniqueFd> socket;  // see above; null for a datagram reuse_port group
  // Its st_ino, read once when it is bound or adopted: a listing shows it for
  // every entry, and an fstat(2) each made listing 10,000 sockets 20% slower.
  std::uint64_t socket_inode = 0;
  std::string error;                       // why it cannot serve; empty when it can
  std::uint64_t grants = 0;                // since this entry was bound (live ones: LeaseTable)
  // Adopted without the state of the broker that bound it: whether, and to
  // whom, that broker handed it out is unknown.
  bool history_unknown = false;
  // reuse_port stream groups: the next grant's member, made ahead (see
  // SocketTable::new_member). Invalid when there is none.
  UniqueFd spare;
  std::optional<FileIdentity> path_file;  // a Unix path: the socket file bound

  // A failed entry is bound again at next_attempt: after 1 s, then twice as
  // long each time, up to a minute (retry_failed).
  unsigned attempts = 0;
  std::chrono::steady_clock::time_point next_attempt{};

  // Takes the bound socket `fd`; release() lets go of it (a rebind).
  void hold(UniqueFd fd);
  void release() noexcept {
    socket.reset();
    socket_inode = 0;
    spare.reset();
  }

  [[nodiscard]] bool serving() const noexcept { return error.empty(); }
  // Whether any process but the broker may hold its socket: one that none
  // ever received cannot have been shut down or connected by a holder.
  [[nodiscard]] bool maybe_handed_out() const noexcept { return grants != 0 || history_unknown; }
  [[nodiscard]] const char* state() const noexcept { return serving() ? "bound" : "failed"; }
  // The error, and for a failed entry when it is tried again.
  [[nodiscard]] std::string detail(std::chrono::steady_clock::time_point now) const;
};

class SocketTable {
 public:
  // Binds every socket of the policy. A socket that cannot be bound is logged,
  // audited (bind_failed) and kept as a failed entry; the others still serve.
  [[nodiscard]] static SocketTable bind_all(const policy::Policy& policy, Audit& audit, spdlog::logger& log);
  // A table of entries made elsewhere (sockets handed over by a previous
  // broker; tests), sorted by name here. Their ids must be unique.
  [[nodiscard]] static SocketTable of(std::vector<TableEntry> entries);

  [[nodiscard]] TableEntry* find(std::string_view name) noexcept;
  [[nodiscard]] const TableEntry* find(std::string_view name) const noexcept;
  [[nodiscard]] const std::vector<TableEntry>& entries() const noexcept { return entries_; }
  [[nodiscard]] std::size_t bound_count() const noexcept { return entries_.size() - failed_; }
  [[nodiscard]] std::size_t failed_count() const noexcept { return failed_; }

  // Who a revoke (or a rebind) reached: the holders of the entry's own
  // socket, which is shut down (a listening socket stops accepting in every
  // process), and those of reuse_port members, which the broker does not keep
  // and cannot shut down: they are told (LeaseTable::on_grants_ended) and serve on
  // until they close the member or exit.
  struct Reached {
    std::vector<pid_t> shut_down;
    std::vector<pid_t> members_held;
    [[nodiscard]] std::size_t count() const noexcept { return shut_down.size() + members_held.size(); }
  };
  struct Changes {
    std::vector<std::string> added, removed;
    std::vector<std::string> changed;   // one line each: the name, what changed, who was shut down
    std::vector<std::string> in_place;  // one line each: the name and the keys changed on the live socket
    std::vector<std::string> failed;    // added or changed, and not bound: the name and why
    std::size_t unchanged = 0;
  };
  // Makes this table serve `next`. Entries whose binding is unchanged keep
  // their kernel socket (and counters); those whose change a live socket can
  // take (policy::binding_change) keep it too, changed in place, holders
  // undisturbed; the others are revoked (their holders shut down) and bound
  // afresh; removed ones are closed by the broker (holders keep what they
  // have). A failed entry is tried again at once.
  Changes apply(const policy::Policy& next, LeaseTable& leases, Audit& audit, spdlog::logger& log);

  // Binds again every failed entry whose next attempt is due, logging and
  // auditing the first success; the others wait twice as long.
  void retry_failed(std::chrono::steady_clock::time_point now, Audit& audit, spdlog::logger& log);
  // When the next failed entry is due, if any is.
  [[nodiscard]] std::optional<std::chrono::steady_clock::time_point> next_retry() const noexcept;

  // A new member of the entry's reuse_port group, listening. The socket,
  // options and bind of a stream member are made ahead, after the previous
  // grant's reply is sent (make_spares): bound but not listening and without
  // SO_REUSEADDR, a spare is what the port holder is, and gets no connections
  // and lets no one in. A grant then only adds SO_REUSEADDR and listens: two
  // system calls instead of five on its path.
  [[nodiscard]] Result<OpenedSocket> new_member(TableEntry& entry);
  // Makes the spares the grants since the last call used up. The loop calls it
  // when it has answered what was ready, before it waits again.
  void make_spares(spdlog::logger& log);

  // Shuts the entry's socket down, forgets its leases and binds afresh.
  // Nothing if there is no such entry.
  [[nodiscard]] std::optional<Reached> revoke(std::string_view name, LeaseTable& leases, Audit& audit,
                                              spdlog::logger& log);

 private:
  // attempt: how many binds of this entry have been tried, this one included.
  TableEntry open_entry(const policy::SocketSpec& spec, Audit& audit, spdlog::logger& log, unsigned attempt = 1);
  // Shuts the entry's kernel socket down and ends its leases.
  static Reached shut_down(TableEntry& entry, LeaseTable& leases);
  // The in-place part of a reload, on the entry's socket and its granted members.
  [[nodiscard]] Status change_live(TableEntry& entry, const policy::SocketSpec& next, const LeaseTable& leases,
                                   spdlog::logger& log);

  // After every change of entries_: only open_entry() fails an entry, and
  // only this class's own methods put what it returns in the table.
  void count_failed() noexcept;

  std::vector<TableEntry> entries_;  // sorted by name, like the policy
  // Entries not serving. next_retry() runs twice per loop turn: with nothing
  // failed it must not walk a 10,000-socket table for every request.
  std::size_t failed_ = 0;
  std::uint64_t next_id_ = 1;
  std::vector<std::pair<std::uint64_t, std::string>> spares_wanted_;  // entry id, name
};

// "; 2 holder(s) shut down (pid 10 11); 1 holder(s) of reuse_port members
// told to stop (pid 12): ...", or "" when no one was reached.
[[nodiscard]] std::string describe_reached(const SocketTable::Reached& reached);

}  // namespace sockbroker::broker
