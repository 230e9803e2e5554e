// Who is on the other end of a control connection, as the kernel says.
#pragma once

#include <sockbroker/fd.hpp>

#include "identity.hpp"

namespace sockbroker::broker {

// Reads SO_PEERCRED and SO_PEERGROUPS (captured by the kernel at connect time,
// so handing the connection to another process changes nothing), then the
// caller's systemd unit, executable and cgroup through /proc. Those three are
// kept only if the process behind SO_PEERPIDFD is still alive after they were
// read: a pid recycled in between cannot lend its unit to the caller.
[[nodiscard]] Result<policy::PeerIdentity> read_peer_identity(int connection);

}  // namespace sockbroker::broker
