// Binding a Unix socket to a filesystem path with no window in which the path
// exists with a mode or owner more permissive than the policy's, and without
// a path any user but root could redirect.
#pragma once

#include <sockbroker/fd.hpp>

#include <string>
#include <vector>

#include "policy.hpp"
#include "socket_factory.hpp"

namespace sockbroker::broker {

// Binds fd to the policy's path (so the socket's name is that path) in a
// directory reached without following a link and changeable by root alone
// (root_directory.hpp), creating missing directories root-owned 0755. The
// file appears with mode 0 and gets its owner, group and mode through a
// descriptor of it. Refuses a final path that is a symlink, that exists and
// is not a socket, or that is a socket some process may still use: only a
// stale socket, one that refuses connections, is replaced.
// Returns the socket file made.
[[nodiscard]] Result<FileIdentity> bind_unix_path(int fd, const policy::SocketSpec& spec,
                                                  std::vector<std::string>& notes);

// A reload's new socket_user, socket_group or socket_mode for the live socket
// bound at spec's path: applied to `file` (what bind_unix_path returned) only,
// reached as bind_unix_path reaches it; a path that names another file now
// is an error, and nothing is changed.
[[nodiscard]] Status set_path_owner_and_mode(const policy::SocketSpec& spec, const FileIdentity& file);

}  // namespace sockbroker::broker
