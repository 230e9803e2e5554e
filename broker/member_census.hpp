// Which members of a reuse_port group still exist, asked of the kernel.
//
// The broker keeps no reference to a member it granted (see
// docs/ARCHITECTURE.md, "reuse_port members"): a member lives exactly as long
// as its holder keeps it, and leaves the group the moment the holder closes
// it. What the broker keeps is each member's inode; this census says which of
// them are still sockets on the group's port in the broker's network
// namespace (sock_diag: TCP listeners, or bound UDP sockets), so that
// max_grants and max_grants_per_client count members that exist.
#pragma once

#include <cstdint>
#include <unordered_set>

#include <sockbroker/fd.hpp>

#include "policy.hpp"

namespace sockbroker::broker {

// The inodes of the sockets on spec's port (its family and protocol) in the
// caller's network namespace: listening ones for a stream socket, bound ones
// for a datagram socket. A host's listeners on one port are few; the dump
// reads every listener of the family and keeps that port's.
[[nodiscard]] Result<std::unordered_set<std::uint64_t>> sockets_on_port(const policy::SocketSpec& spec);

}  // namespace sockbroker::broker
