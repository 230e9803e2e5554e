#include "socket_table.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "confinement.hpp"
#include "unix_socket_path.hpp"

namespace sockbroker::broker {
namespace {

// Only a stream group's member can wait unlistened: a bound UDP member would
// get its share of datagrams at once, and a Unix path binds once.
bool takes_spares(const policy::SocketSpec& spec) {
  return spec.reuse_port && spec.type == SocketType::stream && !spec.listen.is_unix() &&
         spec.netns != policy::NetnsMode::request;
}

// After a failed bind: 1 s, then twice as long each time, up to a minute. An
// address someone else holds is often free again within seconds (a previous
// broker's holders exiting); a minute bounds the log and the work.
std::chrono::seconds retry_delay(unsigned attempts) {
  const unsigned shift = std::min(attempts > 0 ? attempts - 1 : 0u, 6u);
  return std::min(std::chrono::seconds(1u << shift), std::chrono::seconds(60));
}

}  // namespace

std::string describe_reached(const SocketTable::Reached& reached) {
  auto pids = [](const std::vector<pid_t>& list) {
    std::string out = " (pid";
    for (pid_t pid : list) out += " " + std::to_string(pid);
    return out + ")";
  };
  std::string out;
  if (!reached.shut_down.empty()) {
    out += "; " + std::to_string(reached.shut_down.size()) + " holder(s) shut down" + pids(reached.shut_down);
  }
  if (!reached.members_held.empty()) {
    out += "; " + std::to_string(reached.members_held.size()) + " holder(s) of reuse_port members told to stop" +
           pids(reached.members_held) + ": their members serve until they close them";
  }
  return out;
}

void TableEntry::hold(UniqueFd fd) {
  socket_inode = broker::socket_inode(fd.get());
  socket = std::make_shared<const UniqueFd>(std::move(fd));
}

std::string TableEntry::detail(std::chrono::steady_clock::time_point now) const {
  if (serving()) return {};
  if (attempts == 0) return error;
  const auto left = std::chrono::ceil<std::chrono::seconds>(next_attempt - now).count();
  return error + " (attempt " + std::to_string(attempts) + "; next in " + std::to_string(std::max<long>(left, 0)) +
         " s)";
}

TableEntry SocketTable::open_entry(const policy::SocketSpec& spec, Audit& audit, spdlog::logger& log, unsigned attempt) {
  TableEntry entry;
  entry.id = next_id_++;
  entry.spec = spec;
  auto fields = socket_json(spec);
  const bool group = spec.reuse_port;
  if (spec.netns == policy::NetnsMode::request) {
    // Bound per grant inside the namespace the request names (netns_binder.hpp);
    // holding one here would bind it in the broker's namespace, where it does
    // not belong, and pin nothing useful.
    log.info("socket \"{}\": {} ({}) is bound per grant, in the network namespace each request sends",
             spec.name, spec.listen.text, to_string(spec.type));
    return entry;
  }
  if (group && spec.type == SocketType::datagram) {
    // Members are made per grant; there is nothing to hold meanwhile.
    log.info("socket \"{}\": reuse_port datagram group on {}; members are bound per grant", spec.name, spec.listen.text);
    audit.emit("bind", std::move(fields));
    return entry;
  }
  auto opened = open_policy_socket(spec, group ? SocketRole::port_holder : SocketRole::serving);
  if (!opened) {
    entry.error = opened.error().describe();
    // After confinement a refusal may mean a capability given up at start-up.
    int err = opened.error().sys_errno;
    if (err == EPERM || err == EACCES) entry.error += capability_hint(spec);
    entry.attempts = attempt;
    entry.next_attempt = std::chrono::steady_clock::now() + retry_delay(attempt);
    log.error("socket \"{}\": cannot bind {}: {}; trying again in {} s (attempt {})", spec.name, spec.listen.text,
              entry.error, retry_delay(attempt).count(), attempt);
    // The first failure is audited; the retries are the same state, and the
    // success ends it ("bind" with its attempts).
    if (attempt == 1) {
      fields["error"] = entry.error;
      audit.emit("bind_failed", std::move(fields));
    }
    return entry;
  }
  entry.path_file = opened->path_file;
  for (const auto& note : opened->notes) log.warn("socket \"{}\": {}", spec.name, note);
  entry.hold(std::move(opened->fd));
  log.info("socket \"{}\": bound {} ({}{}){}", spec.name, spec.listen.text, to_string(spec.type),
           group ? ", reuse_port group" : "", attempt > 1 ? " on attempt " + std::to_string(attempt) : "");
  if (attempt > 1) fields["attempts"] = attempt;
  audit.emit("bind", std::move(fields));
  return entry;
}

SocketTable SocketTable::bind_all(const policy::Policy& policy, Audit& audit, spdlog::logger& log) {
  SocketTable table;
  table.entries_.reserve(policy.sockets.size());
  for (const auto& spec : policy.sockets) table.entries_.push_back(table.open_entry(spec, audit, log));
  table.count_failed();
  return table;
}

const TableEntry* SocketTable::find(std::string_view name) const noexcept {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                             [](const TableEntry& entry, std::string_view key) { return entry.spec.name < key; });
  if (it == entries_.end() || it->spec.name != name) return nullptr;
  return &*it;
}

SocketTable SocketTable::of(std::vector<TableEntry> entries) {
  SocketTable table;
  std::sort(entries.begin(), entries.end(), [](const TableEntry& a, const TableEntry& b) { return a.spec.name < b.spec.name; });
  for (const auto& entry : entries) table.next_id_ = std::max(table.next_id_, entry.id + 1);
  table.entries_ = std::move(entries);
  table.count_failed();
  return table;
}

TableEntry* SocketTable::find(std::string_view name) noexcept {
  return const_cast<TableEntry*>(std::as_const(*this).find(name));
}

void SocketTable::count_failed() noexcept {
  failed_ = static_cast<std::size_t>(
      std::count_if(entries_.begin(), entries_.end(), [](const TableEntry& e) { return !e.serving(); }));
}

Result<OpenedSocket> SocketTable::new_member(TableEntry& entry) {
  if (takes_spares(entry.spec)) {
    const bool listed = std::any_of(spares_wanted_.begin(), spares_wanted_.end(),
                                    [&](const auto& wanted) { return wanted.first == entry.id; });
    if (!listed) spares_wanted_.emplace_back(entry.id, entry.spec.name);
  }
  if (entry.spare) {
    UniqueFd spare = std::move(entry.spare);
    if (start_serving(spare.get(), entry.spec)) return OpenedSocket{std::move(spare), {}, std::nullopt};
    // Closed; a member made afresh says what is wrong, if anything still is.
  }
  return open_policy_socket(entry.spec);
}

void SocketTable::make_spares(spdlog::logger& log) {
  for (const auto& [id, name] : spares_wanted_) {
    TableEntry* entry = find(name);
    // Gone or rebound by a reload or revoke since: its successor asks anew.
    if (entry == nullptr || entry->id != id || entry->spare || !entry->serving()) continue;
    auto opened = open_policy_socket(entry->spec, SocketRole::port_holder);
    if (!opened) {
      // The next grant makes its member the whole way, and reports the error if it persists.
      log.debug("socket \"{}\": no spare member: {}", name, opened.error().describe());
      continue;
    }
    entry->spare = std::move(opened->fd);
  }
  spares_wanted_.clear();
}

SocketTable::Reached SocketTable::shut_down(TableEntry& entry, LeaseTable& leases) {
  Reached reached;
  auto add = [](std::vector<pid_t>& to, pid_t pid) {
    if (std::find(to.begin(), to.end(), pid) == to.end()) to.push_back(pid);
  };
  for (const auto& [holder, lease] : leases.drop_entry(entry.id)) add(lease.member() ? reached.members_held : reached.shut_down, holder);
  // Told first: see LeaseTable::on_grants_ended.
  if (reached.count() != 0) leases.grants_ended(entry.spec.name, reached.shut_down, reached.members_held);
  // Every holder of a shared socket has this very socket: one shutdown stops them all.
  if (entry.socket && entry.socket->valid()) ::shutdown(entry.socket->get(), SHUT_RDWR);
  return reached;
}

std::optional<SocketTable::Reached> SocketTable::revoke(std::string_view name, LeaseTable& leases, Audit& audit,
                                                        spdlog::logger& log) {
  TableEntry* entry = find(name);
  if (entry == nullptr) return std::nullopt;
  Reached reached = shut_down(*entry, leases);
  policy::SocketSpec spec = entry->spec;
  entry->release();  // the address, before binding it again
  *entry = open_entry(spec, audit, log);
  count_failed();
  return reached;
}

Status SocketTable::change_live(TableEntry& entry, const policy::SocketSpec& next, const LeaseTable& leases,
                                spdlog::logger& log) {
  std::vector<std::string> notes;
  // The broker's own socket: listening unless it is a reuse_port group's
  // port holder or a datagram socket.
  const bool stream = next.type != SocketType::datagram;
  if (entry.socket) {
    if (auto s = change_in_place(entry.socket->get(), next, stream && !next.reuse_port, notes); !s) return s;
  }
  // Members granted already are in their holders' hands only: they keep
  // what they were made with, and members granted from now on get the new
  // values.
  bool members = false;
  leases.for_each_lease_of(entry.id, [&](const Lease& lease) { members = members || lease.member(); });
  if (members) notes.push_back("members granted before this reload keep their former backlog and buffers");
  if (next.listen.kind == policy::Address::Kind::unix_path && entry.path_file &&
      (next.socket_user != entry.spec.socket_user || next.socket_group != entry.spec.socket_group ||
       next.socket_mode != entry.spec.socket_mode)) {
    if (auto s = set_path_owner_and_mode(next, *entry.path_file); !s) return s;
  }
  for (const auto& note : notes) log.warn("socket \"{}\": {}", next.name, note);
  return Ok{};
}

SocketTable::Changes SocketTable::apply(const policy::Policy& next, LeaseTable& leases, Audit& audit,
                                        spdlog::logger& log) {
  Changes changes;
  std::map<std::string, TableEntry, std::less<>> old;
  for (auto& entry : entries_) old.emplace(entry.spec.name, std::move(entry));
  entries_.clear();

  auto joined = [](const std::vector<std::string>& keys) {
    std::string out;
    for (const auto& key : keys) out += (out.empty() ? "" : ", ") + key;
    return out;
  };

  // First let go of every address that is going away or changing, so that a new
  // entry may take an address an old one had. What a live socket can take is
  // changed on it; if it cannot after all, it is bound afresh.
  std::set<std::string, std::less<>> rebind;
  for (auto& [name, entry] : old) {
    const policy::SocketSpec* replacement = next.find(name);
    if (replacement == nullptr) {
      changes.removed.push_back(name);
      // Removed: the broker closes its references; holders keep their sockets.
      leases.drop_entry(entry.id);
      log.info("socket \"{}\": removed from the policy; closed", name);
    } else if (entry.serving()) {
      const policy::BindingChange change = policy::binding_change(entry.spec, *replacement);
      if (change.none()) continue;
      if (change.new_socket.empty()) {
        Status changed = change_live(entry, *replacement, leases, log);
        if (changed) {
          changes.in_place.push_back(name + ": " + joined(change.in_place));
          log.info("socket \"{}\": changed in place: {}", name, joined(change.in_place));
          continue;
        }
        log.warn("socket \"{}\": cannot change {} in place ({}); binding it afresh", name, joined(change.in_place),
                 changed.error().describe());
      }
      rebind.insert(name);
      Reached reached = shut_down(entry, leases);
      std::string line = name + ": " + joined(change.new_socket.empty() ? change.in_place : change.new_socket) +
                         " changed; bound afresh" + describe_reached(reached);
      changes.changed.push_back(std::move(line));
    } else {
      rebind.insert(name);  // failed: tried again now
    }
    entry.release();
  }
  for (const auto& spec : next.sockets) {
    auto it = old.find(spec.name);
    if (it != old.end() && !rebind.contains(spec.name)) {
      TableEntry kept = std::move(it->second);
      kept.spec = spec;  // rules and limits may have changed; the kernel socket has not
      kept.spare.reset();  // made with the old spec's options; the next grant makes one anew
      entries_.push_back(std::move(kept));
      ++changes.unchanged;
      continue;
    }
    if (it == old.end()) changes.added.push_back(spec.name);
    entries_.push_back(open_entry(spec, audit, log));
    if (!entries_.back().serving()) changes.failed.push_back(spec.name + ": " + entries_.back().error);
  }
  count_failed();
  return changes;
}

void SocketTable::retry_failed(std::chrono::steady_clock::time_point now, Audit& audit, spdlog::logger& log) {
  for (auto& entry : entries_) {
    if (entry.serving() || entry.attempts == 0 || entry.next_attempt > now) continue;
    entry = open_entry(entry.spec, audit, log, entry.attempts + 1);
  }
  count_failed();
}

std::optional<std::chrono::steady_clock::time_point> SocketTable::next_retry() const noexcept {
  std::optional<std::chrono::steady_clock::time_point> next;
  if (failed_ == 0) return next;
  for (const auto& entry : entries_) {
    if (entry.serving() || entry.attempts == 0) continue;
    if (!next || entry.next_attempt < *next) next = entry.next_attempt;
  }
  return next;
}

}  // namespace sockbroker::broker
