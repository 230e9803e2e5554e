// Who is on the other end of a control connection, as the kernel says.
#pragma once

#include <sockbroker/fd.hpp>

#include "identity.hpp"

namespace sockbroker::broker {

struct Peer {
  policy::PeerIdentity identity;
  // The connecting process itself (SO_PEERPIDFD), not its pid number: what
  // grants are leased to. Invalid on kernels without SO_PEERPIDFD.
  UniqueFd pidfd;
};

// Reads SO_PEERCRED and SO_PEERGROUPS (captured by the kernel at connect time,
// so handing the connection to another process changes nothing), then the
// caller's systemd unit, executable and cgroup through /proc. Those three are
// kept only if the process behind SO_PEERPIDFD is still alive after they were
// read: a pid recycled in between cannot lend its unit to the caller.
[[nodiscard]] Result<Peer> read_peer(int connection);

}  // namespace sockbroker::broker
