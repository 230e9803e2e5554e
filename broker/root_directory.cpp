#include "root_directory.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "unix_path_safety.hpp"

namespace sockbroker::broker {
namespace {

constexpr mode_t kCreatedDirectoryMode = 0755;

Status check_trusted(int fd, const std::string& shown) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error("fstat \"" + shown + "\"");
  if (auto why = policy::untrusted_directory(st)) {
    return Error{0, EPERM,
                 "\"" + shown + "\" " + *why + "; refusing to work below it (a user who can change it could redirect "
                 "root's operations): use a directory only root can write"};
  }
  return Ok{};
}

}  // namespace

Result<UniqueFd> open_trusted_directory(std::string_view directory) {
  if (directory.empty() || directory[0] != '/') {
    return Error{0, EINVAL, "\"" + std::string(directory) + "\" is not an absolute path"};
  }
  UniqueFd current(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!current) return errno_error("open \"/\"");
  if (auto s = check_trusted(current.get(), "/"); !s) return std::move(s).error();
  std::string shown;
  std::size_t start = 1;
  while (start < directory.size()) {
    std::size_t end = directory.find('/', start);
    if (end == std::string_view::npos) end = directory.size();
    const std::string name(directory.substr(start, end - start));
    start = end + 1;
    if (name.empty()) continue;
    if (name == "." || name == "..") return Error{0, EINVAL, "\"" + std::string(directory) + "\" is not written plainly"};
    shown += "/" + name;
    UniqueFd next(::openat(current.get(), name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next && errno == ENOENT) {
      // mkdir(2) applies the umask: narrow it for this call only (the broker
      // is single-threaded) rather than chmod what a path would name later.
      const mode_t old_mask = ::umask(022);
      const int made = ::mkdirat(current.get(), name.c_str(), kCreatedDirectoryMode);
      const int err = errno;
      ::umask(old_mask);
      if (made != 0 && err != EEXIST) return errno_error("mkdir \"" + shown + "\"", err);
      next.reset(::openat(current.get(), name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    }
    if (!next) {
      const int err = errno;
      if (err == ENOTDIR || err == ELOOP) {
        struct stat st {};
        const bool link = ::fstatat(current.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
        return Error{0, link ? ELOOP : ENOTDIR,
                     "\"" + shown + "\" " +
                         (link ? "is a symbolic link; refusing to follow it (write the path without links)"
                               : "is not a directory")};
      }
      return errno_error("open \"" + shown + "\"", err);
    }
    if (auto s = check_trusted(next.get(), shown); !s) return std::move(s).error();
    current = std::move(next);
  }
  return current;
}

Result<UniqueFd> open_own_socket_file(int parent, const std::string& name, const std::string& shown) {
  UniqueFd entry(::openat(parent, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!entry) return errno_error("open \"" + shown + "\"");
  struct stat st {};
  if (::fstat(entry.get(), &st) != 0) return errno_error("fstat \"" + shown + "\"");
  if (!S_ISSOCK(st.st_mode) || st.st_uid != 0) {
    return Error{0, EPERM, "\"" + shown + "\" is not the socket file the broker just made; leaving it alone"};
  }
  return entry;
}

Status set_owner_and_mode(int entry, uid_t owner, gid_t group, mode_t mode, const std::string& shown) {
  if (::fchownat(entry, "", owner, group, AT_EMPTY_PATH) != 0) return errno_error("chown \"" + shown + "\"");
  // An O_PATH descriptor takes no fchmod(2); its /proc/self/fd link reaches
  // exactly the inode it holds, whatever has happened to the path since.
  if (::fchmodat(AT_FDCWD, ("/proc/self/fd/" + std::to_string(entry)).c_str(), mode, 0) != 0) {
    return errno_error("chmod \"" + shown + "\"");
  }
  return Ok{};
}

std::string path_through(int parent, const std::string& name) {
  return "/proc/self/fd/" + std::to_string(parent) + "/" + name;
}

}  // namespace sockbroker::broker
