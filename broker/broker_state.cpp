#include "broker_state.hpp"

namespace sockbroker::broker {

void release_holder(BrokerState& state, std::unique_ptr<Holder> holder) {
  if (!holder) return;
  for (const auto& lease : holder->leases) {
    TableEntry* entry = state.table.find(lease.socket);
    // A lease from an entry since revoked or rebound no longer counts anywhere.
    if (entry != nullptr && entry->id == lease.entry_id && entry->live > 0) --entry->live;
  }
  // Destroying the holder closes its pidfd (leaving the epoll set) and the
  // broker's references to the members it held.
}

}  // namespace sockbroker::broker
