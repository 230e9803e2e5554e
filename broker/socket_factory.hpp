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

// socket + options + bind (+ listen for stream and seqpacket). The descriptor
// is blocking, as socket-activated services expect, and close-on-exec.
[[nodiscard]] Result<OpenedSocket> open_policy_socket(const policy::SocketSpec& spec);

}  // namespace sockbroker::broker
