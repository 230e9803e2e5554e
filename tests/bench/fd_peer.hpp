// "The limit": the least kernel work a grant needs, done by a bare peer
// process with no policy, no codec and no audit. A client sends a ~60-byte
// SOCK_SEQPACKET message and the peer answers with a same-size reply carrying
// one descriptor (SCM_RIGHTS). Grants are compared with these round trips,
// measured in the same run with the same placement.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>

namespace sbbench {

inline constexpr std::size_t kMessageBytes = 60;

enum class PeerWork {
  shared,      // reply with a duplicate of one listening socket (a shared grant)
  reuseport,   // make, bind and listen a new SO_REUSEPORT member per request, keep it
               // until the client hangs up (as the broker keeps its dup), reply with it
};

// A peer on the other end of a socketpair, pinned to cpu. Stops when the client end closes.
struct PairPeer {
  pid_t pid = -1;
  int fd = -1;  // the client's end
};
[[nodiscard]] PairPeer start_pair_peer(PeerWork work, int cpu);
void stop_pair_peer(PairPeer& peer);

// A peer listening on a Unix SOCK_SEQPACKET path: accept, one round trip, close.
[[nodiscard]] pid_t start_listening_peer(const std::string& path, int cpu);

// A single-threaded epoll server on a Unix SOCK_SEQPACKET path, answering every
// request of every connection with a shared descriptor: the broker's loop with
// nothing but the kernel work. Unpinned (throughput runs use both CPUs).
[[nodiscard]] pid_t start_server_peer(const std::string& path);

// Client side of one round trip: send kMessageBytes, receive the reply and its
// descriptor, close the descriptor. Aborts on any failure.
void round_trip(int fd);
// Client side of connect + round trip + close against start_listening_peer.
void connect_round_trip(const std::string& path);

}  // namespace sbbench
