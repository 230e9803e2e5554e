// Creating the kernel socket a policy entry describes: the broker's only bind(2).
#pragma once

#include <sockbroker/fd.hpp>

#include <string>
#include <vector>

#include "policy.hpp"

namespace sockbroker::broker {

struct OpenedSocket {
  UniqueFd fd;
  // Things the operator should know that did not stop the bind, e.g. a buffer
  // size the kernel clamped.
  std::vector<std::string> notes;
};

enum class SocketRole {
  serving,      // bound and (stream, seqpacket) listening: what a holder accepts on
  port_holder,  // reuse_port stream only: bound, never listening, so the port stays
                // held between workers without connections being hashed to it
};

// socket + options + bind (+ listen for a serving stream or seqpacket socket).
// The descriptor is blocking, as socket-activated services expect, and
// close-on-exec.
[[nodiscard]] Result<OpenedSocket> open_policy_socket(const policy::SocketSpec& spec,
                                                      SocketRole role = SocketRole::serving);

// Makes a socket opened as a port_holder what a serving one is: SO_REUSEADDR
// (inet stream) and listen(2).
[[nodiscard]] Status start_serving(int fd, const policy::SocketSpec& spec);

}  // namespace sockbroker::broker
