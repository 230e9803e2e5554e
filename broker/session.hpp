// One control connection: the identity the kernel vouched for at connect time,
// its idle deadline, and at most one reply the client has not read yet.
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sockbroker/fd.hpp>

#include "identity.hpp"
#include "watched.hpp"

namespace sockbroker::broker {

using Clock = std::chrono::steady_clock;

struct Session {
  std::uint64_t token = 0;  // what its epoll events carry (watched.hpp)
  UniqueFd connection;
  policy::PeerIdentity peer;
  // Whether peer's unit, executable and cgroup have been read (at the first
  // well-formed request; peer_identity.hpp).
  bool identity_resolved = false;
  UniqueFd pidfd;  // the connecting process (SO_PEERPIDFD): what grants are leased to
  bool connector_gone = false;  // known to have exited at accept (Peer::gone)
  // The lease table's holder for that process, once a grant has checked it is
  // alive (LeaseTable tokens are never reused); 0: not yet known.
  std::uint64_t holder_token = 0;
  // The "peer" object of its audit lines, made at its first grant (empty: not yet).
  std::string audit_peer;
  Clock::time_point deadline;
  std::list<Session*>::iterator idle_position;  // in the server's deadline order
  // Sent `watch`: kept open without a deadline (out of the idle order), and
  // told of revocations that end grants of its connecting process.
  bool watching = false;

  // A reply the socket had no room for. While it waits the session is not read
  // from, so a client that never reads costs one reply, not an unbounded queue.
  struct PendingReply {
    std::vector<std::byte> bytes;
    std::shared_ptr<const UniqueFd> fd;
  };
  std::optional<PendingReply> pending;
  bool close_after_reply = false;  // a misbehaving client: answer, then hang up
  // Every datagram of this connection carries SCM_CREDENTIALS (SO_PASSCRED
  // from its connect on). False only for a connection made before the broker
  // set SO_PASSCRED on a socket systemd passed without PassCredentials=yes:
  // then a request without credentials is taken to be the connector's, and
  // no read of 0 bytes is taken for the end of the stream.
  bool credentials_reliable = true;
};

}  // namespace sockbroker::broker
