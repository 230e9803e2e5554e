// netns = "request" sockets: bound at grant time inside the network namespace
// whose descriptor the client sent, and never kept by the broker (a socket pins
// its namespace; a container's namespace must die with the container).
#pragma once

#include <cstdint>

#include <sockbroker/fd.hpp>

#include "policy.hpp"
#include "socket_factory.hpp"

namespace sockbroker::broker {

// The inode of the network namespace fd refers to (what `ip netns identify`,
// `lsns` and /proc/PID/ns/net -> "net:[INODE]" show), or an error saying what
// the descriptor is instead. The descriptor is untrusted: anything a client
// can open or create may arrive here.
[[nodiscard]] Result<std::uint64_t> network_namespace_inode(int fd);

// Creates and binds the policy socket inside the network namespace netns_fd
// (already checked with network_namespace_inode) and returns to the broker's
// own namespace before returning. Never returns in the other namespace: if
// going back fails the process aborts.
[[nodiscard]] Result<OpenedSocket> open_in_netns(const policy::SocketSpec& spec, int netns_fd);

}  // namespace sockbroker::broker
