#include "broker_state.hpp"

namespace sockbroker::broker {

void release_holder(BrokerState& /*state*/, std::unique_ptr<Holder> holder) {
  // Its leases stopped counting when the lease table let go of it. Destroying
  // it closes its pidfd (leaving the epoll set) and the broker's references
  // to the members it held.
  holder.reset();
}

}  // namespace sockbroker::broker
