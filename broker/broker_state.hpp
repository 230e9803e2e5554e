// Everything a decision reads or changes, owned by main() and handed down.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lease_table.hpp"
#include "metrics.hpp"
#include "policy.hpp"
#include "socket_table.hpp"

namespace sockbroker::broker {

struct BrokerState {
  policy::Policy policy;
  std::vector<std::string> policy_paths;  // as given on the command line, for reloads
  SocketTable table;
  LeaseTable leases;
  std::uint64_t generation = 1;  // +1 per successful reload
  Metrics metrics = {};          // what `sockbroker status` reports
  bool upgrade_requested = false;       // SIGUSR2 or `sockbroker upgrade`: the loop re-executes
  // When the shared sockets are next looked at (shared_socket_repair.hpp).
  std::chrono::steady_clock::time_point next_shared_socket_check = {};
};

// A holder's process exited (or its pid was found recycled): its grants stop
// counting, and the broker's references to its reuse_port members close.
void release_holder(BrokerState& state, std::unique_ptr<Holder> holder);

}  // namespace sockbroker::broker
