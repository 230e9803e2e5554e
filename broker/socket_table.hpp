// The sockets the broker holds, by policy name: one shared kernel socket per
// entry, bound at start-up so ports stay held while services are down.
#pragma once

#include <spdlog/logger.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <sockbroker/fd.hpp>

#include "audit.hpp"
#include "policy.hpp"

namespace sockbroker::broker {

struct TableEntry {
  policy::SocketSpec spec;
  // The one kernel socket every grant duplicates. Shared so that a reply still
  // waiting to be sent keeps it alive even if the entry goes away.
  std::shared_ptr<const UniqueFd> socket;
  std::string error;  // why there is no socket
  std::uint64_t grants = 0;

  [[nodiscard]] bool bound() const noexcept { return socket != nullptr; }
};

class SocketTable {
 public:
  // Binds every socket of the policy. A socket that cannot be bound is logged,
  // audited (bind_failed) and kept as a failed entry; the others still serve.
  [[nodiscard]] static SocketTable bind_all(const policy::Policy& policy, Audit& audit, spdlog::logger& log);

  [[nodiscard]] TableEntry* find(std::string_view name) noexcept;
  [[nodiscard]] const std::vector<TableEntry>& entries() const noexcept { return entries_; }
  [[nodiscard]] std::size_t bound_count() const noexcept;
  [[nodiscard]] std::size_t failed_count() const noexcept { return entries_.size() - bound_count(); }

 private:
  std::vector<TableEntry> entries_;  // sorted by name, like the policy
};

}  // namespace sockbroker::broker
