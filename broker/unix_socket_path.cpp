#include "unix_socket_path.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>

namespace sockbroker::broker {
namespace {

constexpr mode_t kDefaultSocketMode = 0666;  // systemd's SocketMode= default

Status make_parents(const std::string& directory) {
  std::string partial;
  std::size_t start = 1;
  while (start <= directory.size()) {
    std::size_t slash = directory.find('/', start);
    if (slash == std::string::npos) slash = directory.size();
    partial = directory.substr(0, slash);
    if (!partial.empty() && ::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
      return errno_error("mkdir \"" + partial + "\"");
    }
    start = slash + 1;
  }
  return Ok{};
}

// A socket file is stale when nobody accepts on it any more.
bool someone_listens(const std::string& path, int type) {
  UniqueFd probe(::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!probe) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size());
  if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) return true;
  return errno == EAGAIN || errno == EINPROGRESS;  // a full backlog is still a listener
}

Status check_existing(const std::string& path, int type) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Ok{};
    return errno_error("lstat \"" + path + "\"");
  }
  if (S_ISLNK(st.st_mode)) return Error{0, ELOOP, "\"" + path + "\" is a symbolic link; refusing to follow it"};
  if (!S_ISSOCK(st.st_mode)) return Error{0, EEXIST, "\"" + path + "\" exists and is not a socket; refusing to replace it"};
  if (someone_listens(path, type)) {
    return Error{0, EADDRINUSE, "\"" + path + "\" is a socket another process is listening on"};
  }
  return Ok{};
}

int socket_type_of(int fd) {
  int type = SOCK_STREAM;
  socklen_t length = sizeof type;
  ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length);
  return type;
}

}  // namespace

Status bind_unix_path(int fd, const policy::SocketSpec& spec) {
  const std::string& path = spec.listen.text;
  std::size_t slash = path.rfind('/');
  std::string directory = slash == 0 ? "/" : path.substr(0, slash);
  std::string base = path.substr(slash + 1);

  if (auto s = make_parents(directory); !s) return s;
  if (auto s = check_existing(path, socket_type_of(fd)); !s) return s;

  UniqueFd parent(::open(directory.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!parent) return errno_error("open \"" + directory + "\"");

  // The private directory: only root can reach what is inside, so the socket's
  // initial mode and ownership do not matter until the rename publishes it.
  std::string private_dir = directory + (directory == "/" ? "" : "/") + ".sockbroker-XXXXXX";
  if (::mkdtemp(private_dir.data()) == nullptr) return errno_error("mkdtemp in \"" + directory + "\"");
  std::string private_name = private_dir.substr(private_dir.rfind('/') + 1);
  auto remove_private = [&] { ::unlinkat(parent.get(), private_name.c_str(), AT_REMOVEDIR); };

  UniqueFd inside(::open(private_dir.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!inside) {
    Error e = errno_error("open \"" + private_dir + "\"");
    remove_private();
    return e;
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
    remove_private();
    return e;
  }
  auto fail = [&](std::string what) {
    Error e = errno_error(std::move(what));
    ::unlinkat(inside.get(), inner.c_str(), 0);
    remove_private();
    return e;
  };
  uid_t owner = spec.socket_user.value_or(0);
  gid_t group = spec.socket_group.value_or(0);
  if (::fchownat(inside.get(), inner.c_str(), owner, group, AT_SYMLINK_NOFOLLOW) != 0) return fail("chown " + path);
  if (::fchmodat(inside.get(), inner.c_str(), spec.socket_mode.value_or(kDefaultSocketMode), 0) != 0) return fail("chmod " + path);
  if (::renameat(inside.get(), inner.c_str(), parent.get(), base.c_str()) != 0) return fail("rename into \"" + path + "\"");
  remove_private();
  return Ok{};
}

}  // namespace sockbroker::broker
