// The control socket clients connect to: SOCK_SEQPACKET, AF_UNIX.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include <sockbroker/fd.hpp>

#include "handover_item.hpp"

namespace sockbroker::broker {

struct ControlSocket {
  UniqueFd fd;
  std::string created_path;  // empty when systemd passed the socket: not ours to unlink
  // Whether every connection has SO_PASSCRED from its connect on (see
  // datagram.hpp): true for a socket the broker made, or one systemd made
  // with PassCredentials=yes. Otherwise connections made before the broker
  // set it (while systemd held the socket) lack it, and each is checked.
  bool credentials_from_connect = true;
};

// Takes the control socket from `passed` (the item named "control", or a lone
// unnamed one: socket activation, systemd's descriptor store, an upgrade in
// place) or creates path with the given mode. The parent directory is
// created root-owned 0755 if missing, and refused if it is a symlink or
// writable by anyone but root. A stale socket at path is replaced; a live one
// (another broker) is an error.
[[nodiscard]] Result<ControlSocket> open_control_socket(const std::string& path, mode_t mode,
                                                       std::vector<HandoverItem>& passed);

// Whether clients may attach descriptors to their requests (SO_PASSRIGHTS,
// Linux >= 6.16; a no-op before). Open returns the socket refusing them; the
// server accepts them while the policy has a netns = "request" socket, whose
// requests carry a network namespace. Connections keep the setting the
// listening socket had when they connected.
[[nodiscard]] Status accept_descriptors(int control, bool accept);

}  // namespace sockbroker::broker
