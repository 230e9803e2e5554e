// Creating the kernel socket a policy entry describes: the broker's only bind(2).
#pragma once

#include <sockbroker/fd.hpp>

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "policy.hpp"

namespace sockbroker::broker {

// A file system object, as the kernel names it: what a Unix socket's path
// was when the broker bound it, so that a later change of its owner or mode
// reaches that very file and no other.
struct FileIdentity {
  dev_t device = 0;
  ino_t inode = 0;
};

struct OpenedSocket {
  UniqueFd fd;
  // Things the operator should know that did not stop the bind, e.g. a buffer
  // size the kernel clamped.
  std::vector<std::string> notes;
  std::optional<FileIdentity> path_file;  // Unix path sockets
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

// Applies to a live socket what a reload changed that a bound socket can
// change (policy::binding_change's in_place keys but a path's owner and mode:
// unix_socket_path.hpp): listen(2) again for the backlog (a listening socket
// only), the buffers, TCP_FASTOPEN. Notes as open_policy_socket's.
[[nodiscard]] Status change_in_place(int fd, const policy::SocketSpec& next, bool listening,
                                     std::vector<std::string>& notes);

}  // namespace sockbroker::broker
