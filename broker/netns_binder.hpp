// netns = "request" sockets: bound at grant time inside the network namespace
// whose descriptor the client sent, and never kept by the broker (a socket pins
// its namespace; a container's namespace must die with the container).
#pragma once

#include <cstdint>

#include <sockbroker/fd.hpp>

#include "grant_plan.hpp"
#include "policy.hpp"
#include "socket_factory.hpp"

namespace sockbroker::broker {

// What plan_grant needs to know of the network namespace fd refers to: its
// inode (what `ip netns identify`, `lsns` and /proc/PID/ns/net -> "net:[INODE]"
// show), whether it is the broker's own, and what `socket`'s netns_owner and
// netns_path need (its owner; where among those paths it is mounted); or an
// error saying what the descriptor is instead. The descriptor is untrusted:
// anything a client can open or create may arrive here. `socket` may be null
// (nothing but the first two is asked).
[[nodiscard]] Result<NamespaceFacts> inspect_network_namespace(int fd, const policy::SocketSpec* socket);

// Creates and binds the policy socket inside the network namespace netns_fd
// (already checked with inspect_network_namespace) and returns to the broker's
// own namespace before returning. Never returns in the other namespace: if
// going back fails the process aborts.
[[nodiscard]] Result<OpenedSocket> open_in_netns(const policy::SocketSpec& spec, int netns_fd);

}  // namespace sockbroker::broker
