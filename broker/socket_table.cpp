#include "socket_table.hpp"

#include <algorithm>
#include <cstring>

#include "socket_factory.hpp"

namespace sockbroker::broker {

SocketTable SocketTable::bind_all(const policy::Policy& policy, Audit& audit, spdlog::logger& log) {
  SocketTable table;
  table.entries_.reserve(policy.sockets.size());
  for (const auto& spec : policy.sockets) {
    TableEntry entry{spec, nullptr, {}, 0};
    auto opened = open_policy_socket(spec);
    nlohmann::ordered_json fields = socket_json(spec);
    if (opened) {
      for (const auto& note : opened->notes) log.warn("socket \"{}\": {}", spec.name, note);
      entry.socket = std::make_shared<const UniqueFd>(std::move(opened->fd));
      log.info("socket \"{}\": bound {} ({})", spec.name, spec.listen.text, proto::to_string(spec.type));
      audit.emit("bind", std::move(fields));
    } else {
      const Error& e = opened.error();
      entry.error = e.sys_errno != 0 ? e.message + ": " + std::strerror(e.sys_errno) : e.message;
      log.error("socket \"{}\": cannot bind {}: {}", spec.name, spec.listen.text, entry.error);
      fields["error"] = entry.error;
      audit.emit("bind_failed", std::move(fields));
    }
    table.entries_.push_back(std::move(entry));
  }
  return table;
}

TableEntry* SocketTable::find(std::string_view name) noexcept {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                             [](const TableEntry& entry, std::string_view key) { return entry.spec.name < key; });
  if (it == entries_.end() || it->spec.name != name) return nullptr;
  return &*it;
}

std::size_t SocketTable::bound_count() const noexcept {
  return static_cast<std::size_t>(std::count_if(entries_.begin(), entries_.end(), [](const TableEntry& e) { return e.bound(); }));
}

}  // namespace sockbroker::broker
