#include "unix_socket_path.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "root_directory.hpp"

namespace sockbroker::broker {
namespace {

constexpr mode_t kDefaultSocketMode = 0666;  // systemd's SocketMode= default

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size());
  return address;
}

// An existing socket file may be replaced only when it is stale: connecting to
// it is refused because no socket is bound to it any more. Anything else means
// someone may still own it: an accepted connection, a full accept queue
// (EAGAIN), a socket of another type (EPROTOTYPE: e.g. a live datagram socket
// probed with a stream one), or an error we cannot read (EACCES...).
Status check_stale(const std::string& reach, const std::string& shown, int type) {
  UniqueFd probe(::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!probe) return errno_error("socket (to probe \"" + shown + "\")");
  sockaddr_un address = unix_address(reach);
  if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    int err = errno;
    // ENOENT: it went away meanwhile; the bind will create the path.
    if (err == ECONNREFUSED || err == ENOENT) return Ok{};
    if (err != EAGAIN && err != EINPROGRESS) {
      return errno_error("\"" + shown + "\" is a socket another process may be using (probing it failed otherwise than "
                         "with \"connection refused\"); refusing to replace it",
                         err);
    }
  }
  return Error{0, EADDRINUSE, "\"" + shown + "\" is a socket another process is listening on"};
}

// Makes room for the bind: nothing there, or a stale socket file, removed.
Status clear_the_way(int parent, const std::string& base, const std::string& path, int type) {
  struct stat st {};
  if (::fstatat(parent, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return Ok{};
    return errno_error("lstat \"" + path + "\"");
  }
  if (S_ISLNK(st.st_mode)) return Error{0, ELOOP, "\"" + path + "\" is a symbolic link; refusing to follow it"};
  if (!S_ISSOCK(st.st_mode)) return Error{0, EEXIST, "\"" + path + "\" exists and is not a socket; refusing to replace it"};
  // Probed through the directory the broker holds, not the path again.
  std::string reach = path_through(parent, base);
  if (reach.size() >= sizeof(sockaddr_un::sun_path)) reach = path;  // its directories are root's alone
  if (auto s = check_stale(reach, path, type); !s) return s;
  if (::unlinkat(parent, base.c_str(), 0) != 0 && errno != ENOENT) return errno_error("unlink stale \"" + path + "\"");
  return Ok{};
}

Result<int> socket_type_of(int fd) {
  int type = 0;
  socklen_t length = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) != 0) return errno_error("getsockopt(SO_TYPE)");
  return type;
}

}  // namespace

Result<FileIdentity> bind_unix_path(int fd, const policy::SocketSpec& spec, std::vector<std::string>& /*notes*/) {
  const std::string& path = spec.listen.text;
  const std::size_t slash = path.rfind('/');
  const std::string directory = slash == 0 ? "/" : path.substr(0, slash);
  const std::string base = path.substr(slash + 1);

  auto type = socket_type_of(fd);
  if (!type) return std::move(type).error();
  auto parent = open_trusted_directory(directory);
  if (!parent) return std::move(parent).error();
  if (auto s = clear_the_way(parent->get(), base, path, *type); !s) return std::move(s).error();

  // Bound by its own name, so that getsockname(2), ss and the programs that
  // match inherited sockets by path (nginx, lighttpd) see the policy's path.
  // The kernel walks the string again, through directories only root can
  // change (checked above). Under umask 0777 the file appears with mode 0:
  // no one can connect before the owner and mode below are set.
  sockaddr_un address = unix_address(path);
  const mode_t old_mask = ::umask(0777);
  const int bound = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  const int bind_errno = errno;
  ::umask(old_mask);
  if (bound != 0) return errno_error("bind " + path, bind_errno);

  auto entry = open_own_socket_file(parent->get(), base, path);
  Status done = entry ? set_owner_and_mode(entry->get(), spec.socket_user.value_or(0), spec.socket_group.value_or(0),
                                           spec.socket_mode.value_or(kDefaultSocketMode), path)
                      : Status(std::move(entry).error());
  struct stat st {};
  if (done && ::fstat(entry->get(), &st) != 0) done = errno_error("fstat \"" + path + "\"");
  if (!done) {
    if (entry) (void)::unlinkat(parent->get(), base.c_str(), 0);  // ours, and unusable: do not leave it
    return std::move(done).error();
  }
  return FileIdentity{st.st_dev, st.st_ino};
}

Status set_path_owner_and_mode(const policy::SocketSpec& spec, const FileIdentity& file) {
  const std::string& path = spec.listen.text;
  const std::size_t slash = path.rfind('/');
  const std::string directory = slash == 0 ? "/" : path.substr(0, slash);
  const std::string base = path.substr(slash + 1);
  auto parent = open_trusted_directory(directory);
  if (!parent) return std::move(parent).error();
  UniqueFd entry(::openat(parent->get(), base.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!entry) return errno_error("open \"" + path + "\"");
  struct stat st {};
  if (::fstat(entry.get(), &st) != 0) return errno_error("fstat \"" + path + "\"");
  if (!S_ISSOCK(st.st_mode) || st.st_dev != file.device || st.st_ino != file.inode) {
    return Error{0, EEXIST, "\"" + path + "\" is no longer the socket file the broker made; leaving it alone"};
  }
  return set_owner_and_mode(entry.get(), spec.socket_user.value_or(0), spec.socket_group.value_or(0),
                            spec.socket_mode.value_or(kDefaultSocketMode), path);
}

}  // namespace sockbroker::broker
