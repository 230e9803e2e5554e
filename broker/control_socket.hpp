// The control socket clients connect to: SOCK_SEQPACKET, AF_UNIX.
#pragma once

#include <sys/types.h>

#include <string>

#include <sockbroker/fd.hpp>

namespace sockbroker::broker {

struct ControlSocket {
  UniqueFd fd;
  std::string created_path;  // empty when systemd passed the socket: not ours to unlink
};

// Takes the socket systemd passed (LISTEN_FDS: the one named "control", or the
// only one) or creates path with the given mode. The parent directory is
// created root-owned 0755 if missing, and refused if it is a symlink or
// writable by anyone but root. A stale socket at path is replaced; a live one
// (another broker) is an error.
[[nodiscard]] Result<ControlSocket> open_control_socket(const std::string& path, mode_t mode);

}  // namespace sockbroker::broker
