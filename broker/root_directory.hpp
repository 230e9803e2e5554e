// Directories root may work in: reached from "/" one component at a time,
// never through a symbolic link, each one owned by root and closed to others
// (policy/unix_path_safety.hpp says why). Every later operation is relative
// to the descriptor this returns, never to a path string walked again.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include <sockbroker/fd.hpp>

namespace sockbroker::broker {

// Opens `directory` (absolute, written plainly) as an O_PATH descriptor.
// Missing components are created root-owned 0755 whatever the umask (a unit's
// UMask=0077 would otherwise lock clients out of the socket inside). An
// untrusted component is an error naming it and why (ELOOP for a link,
// EPERM otherwise).
[[nodiscard]] Result<UniqueFd> open_trusted_directory(std::string_view directory);

// The entry `name` of `parent`, as an O_PATH descriptor that did not follow a
// link, checked to be a socket file owned by root: one the broker itself
// just bound (under umask 0777, so mode 0 until chown and chmod).
[[nodiscard]] Result<UniqueFd> open_own_socket_file(int parent, const std::string& name, const std::string& shown);

// chown and chmod of what `entry` (from open_own_socket_file) refers to, and
// nothing else: through the descriptor, never a path.
[[nodiscard]] Status set_owner_and_mode(int entry, uid_t owner, gid_t group, mode_t mode, const std::string& shown);

// "/proc/self/fd/N/name": a path that reaches `name` in exactly the directory
// `parent` refers to, for the calls that take only paths (connect).
[[nodiscard]] std::string path_through(int parent, const std::string& name);

}  // namespace sockbroker::broker
