// Which directories a root process may create a Unix socket in without being
// raced by someone else: what `sockbroker check` reports and what the broker
// enforces each time it binds a path (broker/root_directory.hpp).
//
// A directory that another user can write (or owns) lets that user swap an
// entry for a symbolic link while root works below it, and turn root's
// chown/chmod of "the socket" onto any file. So every directory on the way
// to a socket must be a real directory (never a symbolic link), owned by
// root, and closed to writes by group and others unless it is sticky: in a
// sticky directory (/tmp) others may add entries but may not rename or
// remove root's.
#pragma once

#include <sys/stat.h>

#include <optional>
#include <string>
#include <string_view>

namespace sockbroker::policy {

// Why a directory with this status cannot be trusted ("owned by uid 1000",
// "writable by its group (gid 33) and not sticky"), or nullopt when it can.
[[nodiscard]] std::optional<std::string> untrusted_directory(const struct stat& st);

// A path is written in its plain form: absolute, no empty, "." or ".."
// component (parse_address enforces it). The socket's directory is what the
// broker creates missing parts of (root-owned, 0755).
struct PathVerdict {
  enum class Kind { trusted, untrusted, unknown } kind = Kind::trusted;
  std::string message;  // for untrusted and unknown
};

// Walks the existing directories of a socket path from "/" with lstat. A
// component that does not exist yet is fine (the broker creates it, trusted);
// one that cannot be inspected (EACCES, when not run as root) is `unknown`.
[[nodiscard]] PathVerdict check_socket_directories(std::string_view socket_path);

// The same walk for any path root will look something up in (netns_path):
// `advice` ends the message about a directory that is not a link but can be
// changed by someone other than root. A missing directory is fine.
[[nodiscard]] PathVerdict check_directories_on_the_way(std::string_view path, std::string_view advice);

}  // namespace sockbroker::policy
