#include "socket_table.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "confinement.hpp"

namespace sockbroker::broker {
namespace {

std::string describe(const Error& e) {
  return e.sys_errno != 0 ? e.message + ": " + std::strerror(e.sys_errno) : e.message;
}

// Only a stream group's member can wait unlistened: a bound UDP member would
// get its share of datagrams at once, and a Unix path binds once.
bool takes_spares(const policy::SocketSpec& spec) {
  return spec.reuse_port && spec.type == proto::SocketType::stream && !spec.listen.is_unix() &&
         spec.netns != policy::NetnsMode::request;
}

}  // namespace

TableEntry SocketTable::open_entry(const policy::SocketSpec& spec, Audit& audit, spdlog::logger& log) {
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
             spec.name, spec.listen.text, proto::to_string(spec.type));
    return entry;
  }
  if (group && spec.type == proto::SocketType::datagram) {
    // Members are made per grant; there is nothing to hold meanwhile.
    log.info("socket \"{}\": reuse_port datagram group on {}; members are bound per grant", spec.name, spec.listen.text);
    audit.emit("bind", std::move(fields));
    return entry;
  }
  auto opened = open_policy_socket(spec, group ? SocketRole::port_holder : SocketRole::serving);
  if (!opened) {
    entry.error = describe(opened.error());
    // After confinement a refusal may mean a capability given up at start-up.
    int err = opened.error().sys_errno;
    if (err == EPERM || err == EACCES) entry.error += capability_hint(spec);
    log.error("socket \"{}\": cannot bind {}: {}", spec.name, spec.listen.text, entry.error);
    fields["error"] = entry.error;
    audit.emit("bind_failed", std::move(fields));
    return entry;
  }
  for (const auto& note : opened->notes) log.warn("socket \"{}\": {}", spec.name, note);
  entry.socket = std::make_shared<const UniqueFd>(std::move(opened->fd));
  log.info("socket \"{}\": bound {} ({}{})", spec.name, spec.listen.text, proto::to_string(spec.type),
           group ? ", reuse_port group" : "");
  audit.emit("bind", std::move(fields));
  return entry;
}

SocketTable SocketTable::bind_all(const policy::Policy& policy, Audit& audit, spdlog::logger& log) {
  SocketTable table;
  table.entries_.reserve(policy.sockets.size());
  for (const auto& spec : policy.sockets) table.entries_.push_back(table.open_entry(spec, audit, log));
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
  return table;
}

TableEntry* SocketTable::find(std::string_view name) noexcept {
  return const_cast<TableEntry*>(std::as_const(*this).find(name));
}

std::size_t SocketTable::bound_count() const noexcept {
  return static_cast<std::size_t>(
      std::count_if(entries_.begin(), entries_.end(), [](const TableEntry& e) { return e.serving(); }));
}

Result<OpenedSocket> SocketTable::new_member(TableEntry& entry) {
  if (takes_spares(entry.spec)) {
    const bool listed = std::any_of(spares_wanted_.begin(), spares_wanted_.end(),
                                    [&](const auto& wanted) { return wanted.first == entry.id; });
    if (!listed) spares_wanted_.emplace_back(entry.id, entry.spec.name);
  }
  if (entry.spare) {
    UniqueFd spare = std::move(entry.spare);
    if (start_serving(spare.get(), entry.spec)) return OpenedSocket{std::move(spare), {}};
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
      log.debug("socket \"{}\": no spare member: {}", name, describe(opened.error()));
      continue;
    }
    entry->spare = std::move(opened->fd);
  }
  spares_wanted_.clear();
}

std::size_t SocketTable::shut_down(TableEntry& entry, LeaseTable& leases) {
  std::vector<Lease> dropped = leases.drop_entry(entry.id);
  // One shutdown per kernel socket: every holder of a shared socket has the same one.
  std::set<int> done;
  auto stop = [&](const std::shared_ptr<const UniqueFd>& socket) {
    if (socket && socket->valid() && done.insert(socket->get()).second) ::shutdown(socket->get(), SHUT_RDWR);
  };
  for (const auto& lease : dropped) stop(lease.kernel_socket);
  stop(entry.socket);
  return dropped.size();
}

std::optional<std::size_t> SocketTable::revoke(std::string_view name, LeaseTable& leases, Audit& audit,
                                               spdlog::logger& log) {
  TableEntry* entry = find(name);
  if (entry == nullptr) return std::nullopt;
  std::size_t shut = shut_down(*entry, leases);
  policy::SocketSpec spec = entry->spec;
  entry->socket.reset();  // release the address before binding it again
  entry->spare.reset();
  *entry = open_entry(spec, audit, log);
  return shut;
}

SocketTable::Changes SocketTable::apply(const policy::Policy& next, LeaseTable& leases, Audit& audit,
                                        spdlog::logger& log) {
  Changes changes;
  std::map<std::string, TableEntry, std::less<>> old;
  for (auto& entry : entries_) old.emplace(entry.spec.name, std::move(entry));
  entries_.clear();

  // First let go of every address that is going away or changing, so that a new
  // entry may take an address an old one had.
  std::set<std::string, std::less<>> rebind;
  for (auto& [name, entry] : old) {
    const policy::SocketSpec* replacement = next.find(name);
    if (replacement != nullptr && policy::same_binding(entry.spec, *replacement) && entry.serving()) continue;
    if (replacement == nullptr) {
      changes.removed.push_back(name);
      // Removed: the broker closes its references; holders keep their sockets.
      leases.drop_entry(entry.id);
      log.info("socket \"{}\": removed from the policy; closed", name);
    } else {
      changes.changed.push_back(name);
      rebind.insert(name);
      shut_down(entry, leases);
    }
    entry.socket.reset();
    entry.spare.reset();
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
  }
  return changes;
}

}  // namespace sockbroker::broker
