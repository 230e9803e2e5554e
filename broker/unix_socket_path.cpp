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

namespace sockbroker::broker {
namespace {

constexpr mode_t kDefaultSocketMode = 0666;  // systemd's SocketMode= default
constexpr mode_t kParentMode = 0755;

Status make_parents(const std::string& directory) {
  std::string partial;
  std::size_t start = 1;
  while (start <= directory.size()) {
    std::size_t slash = directory.find('/', start);
    if (slash == std::string::npos) slash = directory.size();
    partial = directory.substr(0, slash);
    if (::mkdir(partial.c_str(), kParentMode) == 0) {
      // mkdir(2) applies the umask, and a hardened unit may start the broker
      // with UMask=0077: that would leave every client unable to reach the
      // socket. Set the mode on the directory just made, not on whatever a
      // symlink swapped in since would point to.
      UniqueFd created(::open(partial.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!created) return errno_error("open \"" + partial + "\"");
      if (::fchmod(created.get(), kParentMode) != 0) return errno_error("chmod \"" + partial + "\"");
    } else if (int err = errno; err != EEXIST) {
      return errno_error("mkdir \"" + partial + "\"", err);
    }
    start = slash + 1;
  }
  return Ok{};
}

// An existing socket file may be replaced only when it is stale: connecting to
// it is refused because no socket is bound to it any more. Anything else means
// someone may still own it: an accepted connection, a full accept queue
// (EAGAIN), a socket of another type (EPROTOTYPE: e.g. a live datagram socket
// probed with a stream one), or an error we cannot read (EACCES...).
Status check_stale(const std::string& path, int type) {
  UniqueFd probe(::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!probe) return errno_error("socket (to probe \"" + path + "\")");
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size());
  if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    int err = errno;
    // ENOENT: it went away meanwhile, and the rename will create the path.
    if (err == ECONNREFUSED || err == ENOENT) return Ok{};
    if (err != EAGAIN && err != EINPROGRESS) {
      return errno_error("\"" + path + "\" is a socket another process may be using (probing it failed otherwise than "
                         "with \"connection refused\"); refusing to replace it",
                         err);
    }
  }
  return Error{0, EADDRINUSE, "\"" + path + "\" is a socket another process is listening on"};
}

Status check_existing(const std::string& path, int type) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Ok{};
    return errno_error("lstat \"" + path + "\"");
  }
  if (S_ISLNK(st.st_mode)) return Error{0, ELOOP, "\"" + path + "\" is a symbolic link; refusing to follow it"};
  if (!S_ISSOCK(st.st_mode)) return Error{0, EEXIST, "\"" + path + "\" exists and is not a socket; refusing to replace it"};
  return check_stale(path, type);
}

Result<int> socket_type_of(int fd) {
  int type = 0;
  socklen_t length = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) != 0) return errno_error("getsockopt(SO_TYPE)");
  return type;
}

// Removes the private directory (and, if `inner` is set, the socket file still
// inside it). Returns what could not be removed, "" when everything went:
// cleanup is never silent, nor does it hide the failure that called it.
std::string remove_private(int parent, const std::string& private_name, int inside, const std::string& inner) {
  std::string leftovers;
  if (!inner.empty() && ::unlinkat(inside, inner.c_str(), 0) != 0) {
    int err = errno;
    leftovers = "could not remove \"" + private_name + "/" + inner + "\": " + std::strerror(err);
  }
  if (::unlinkat(parent, private_name.c_str(), AT_REMOVEDIR) != 0) {
    int err = errno;
    leftovers += (leftovers.empty() ? "" : "; ") + std::string("could not remove the private directory \"") +
                 private_name + "\": " + std::strerror(err);
  }
  return leftovers;
}

Error with_leftovers(Error e, const std::string& leftovers) {
  if (leftovers.empty()) return e;
  // Fold the first errno into the text so that it stays next to its cause.
  std::string cause = e.sys_errno != 0 ? e.message + ": " + std::strerror(e.sys_errno) : e.message;
  return Error{e.code, 0, cause + "; " + leftovers};
}

}  // namespace

Status bind_unix_path(int fd, const policy::SocketSpec& spec, std::vector<std::string>& notes) {
  const std::string& path = spec.listen.text;
  std::size_t slash = path.rfind('/');
  std::string directory = slash == 0 ? "/" : path.substr(0, slash);
  std::string base = path.substr(slash + 1);

  auto type = socket_type_of(fd);
  if (!type) return std::move(type).error();
  if (auto s = make_parents(directory); !s) return s;
  if (auto s = check_existing(path, *type); !s) return s;

  UniqueFd parent(::open(directory.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!parent) return errno_error("open \"" + directory + "\"");

  // The private directory: only root can reach what is inside, so the socket's
  // initial mode and ownership do not matter until the rename publishes it.
  std::string private_dir = directory + (directory == "/" ? "" : "/") + ".sockbroker-XXXXXX";
  if (::mkdtemp(private_dir.data()) == nullptr) return errno_error("mkdtemp in \"" + directory + "\"");
  std::string private_name = private_dir.substr(private_dir.rfind('/') + 1);

  UniqueFd inside(::open(private_dir.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!inside) {
    Error e = errno_error("open \"" + private_dir + "\"");
    return with_leftovers(std::move(e), remove_private(parent.get(), private_name, -1, ""));
  }
  // The kernel records the bind path as the socket's name (ss, getsockname):
  // keep the real base name when it fits, else go through /proc to stay short.
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::string bind_path = private_dir + "/" + base;
  if (bind_path.size() >= sizeof address.sun_path) {
    bind_path = "/proc/self/fd/" + std::to_string(inside.get()) + "/" + base;
  }
  if (bind_path.size() >= sizeof address.sun_path) {
    bind_path = "/proc/self/fd/" + std::to_string(inside.get()) + "/s";
  }
  std::string inner = bind_path.substr(bind_path.rfind('/') + 1);
  std::memcpy(address.sun_path, bind_path.c_str(), bind_path.size());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    Error e = errno_error("bind " + path);
    return with_leftovers(std::move(e), remove_private(parent.get(), private_name, -1, ""));
  }
  auto fail = [&](std::string what) {
    Error e = errno_error(std::move(what));
    return with_leftovers(std::move(e), remove_private(parent.get(), private_name, inside.get(), inner));
  };
  uid_t owner = spec.socket_user.value_or(0);
  gid_t group = spec.socket_group.value_or(0);
  if (::fchownat(inside.get(), inner.c_str(), owner, group, AT_SYMLINK_NOFOLLOW) != 0) return fail("chown " + path);
  if (::fchmodat(inside.get(), inner.c_str(), spec.socket_mode.value_or(kDefaultSocketMode), 0) != 0) return fail("chmod " + path);
  if (::renameat(inside.get(), inner.c_str(), parent.get(), base.c_str()) != 0) return fail("rename into \"" + path + "\"");
  // The socket is in place and serving: an empty directory left behind is
  // worth a warning, not a failed socket.
  if (std::string leftovers = remove_private(parent.get(), private_name, -1, ""); !leftovers.empty()) {
    notes.push_back(leftovers + " in \"" + directory + "\"");
  }
  return Ok{};
}

}  // namespace sockbroker::broker
