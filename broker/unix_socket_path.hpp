// Binding a Unix socket to a filesystem path with no window in which the path
// exists with a mode or owner more permissive than the policy's.
#pragma once

#include <sockbroker/fd.hpp>

#include <string>
#include <vector>

#include "policy.hpp"

namespace sockbroker::broker {

// Binds fd inside a fresh root-only directory next to the final path, sets
// owner, group and mode there, then renames it into place. Refuses a final path
// that is a symlink, that exists and is not a socket, or that is a socket some
// process may still use: only a stale socket, one that refuses connections,
// is replaced. Missing parent directories are created root-owned 0755,
// whatever the umask. Anything the operator should know that did not stop the
// bind (a private directory that could not be removed) is appended to notes.
[[nodiscard]] Status bind_unix_path(int fd, const policy::SocketSpec& spec, std::vector<std::string>& notes);

}  // namespace sockbroker::broker
