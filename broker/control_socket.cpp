#include "control_socket.hpp"

#include <fcntl.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstring>

#include "kernel_probe.hpp"
#include "root_directory.hpp"

namespace sockbroker::broker {
namespace {

// Short on purpose: the kernel keeps one first-in, first-out queue of
// connections for every uid, and its length is what one uid's connect flood
// makes all the others wait behind (ARCHITECTURE.md, "Resource bounds").
// Connectors beyond it sleep in connect(2), woken in order; only a
// non-blocking connect fails (EAGAIN).
constexpr int kControlBacklog = 16;

// Only an acquire of a netns = "request" socket carries a descriptor: until
// the policy has one, and where the kernel can (Linux >= 6.16), refuse them at
// the sender, whose sendmsg then fails with EPERM. Connections inherit the
// setting from the listening socket at connect time, so there is no window; on
// older kernels what arrives is closed on receipt.
Status refuse_descriptors(int control) { return accept_descriptors(control, false); }

// Every datagram then arrives with its sender's credentials (SCM_CREDENTIALS):
// who sent this very request, and, since an empty datagram has them and the
// end of the stream has not, a positive end of stream (datagram.hpp).
// Connections inherit it from the listening socket.
Status pass_credentials(int control) {
  int on = 1;
  if (::setsockopt(control, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) {
    return errno_error("setsockopt(SO_PASSCRED) on the control socket");
  }
  return Ok{};
}

// The control socket among what was passed: the item named "control" (the
// shipped socket unit's FileDescriptorName=, and what the broker stores in
// systemd's descriptor store), or a lone unnamed one (a socket unit without
// FileDescriptorName=).
Result<UniqueFd> take_passed(std::vector<HandoverItem>& passed) {
  UniqueFd chosen;
  for (auto& item : passed) {
    if (item.fd && item.name == "control") chosen = std::move(item.fd);
  }
  if (!chosen && passed.size() == 1 && passed[0].fd && (passed[0].name.empty() || passed[0].name == "unknown")) {
    chosen = std::move(passed[0].fd);
  }
  if (!chosen) return UniqueFd();
  if (::sd_is_socket_unix(chosen.get(), SOCK_SEQPACKET, 1, nullptr, 0) <= 0) {
    return Error{0, EINVAL, "the control socket passed is not a listening AF_UNIX SOCK_SEQPACKET socket"};
  }
  return chosen;
}

// Replaces a stale socket at `name` in `parent`; a live one (another broker)
// or anything that is not a socket is an error.
Status remove_stale(int parent, const std::string& name, const std::string& path) {
  struct stat st {};
  if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno == ENOENT ? Status(Ok{}) : Status(errno_error("lstat \"" + path + "\""));
  }
  if (!S_ISSOCK(st.st_mode)) return Error{0, EEXIST, "\"" + path + "\" exists and is not a socket"};
  UniqueFd probe(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size());
  if (probe && ::connect(probe.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    return Error{0, EADDRINUSE, "another broker is already listening on \"" + path + "\""};
  }
  if (::unlinkat(parent, name.c_str(), 0) != 0) return errno_error("unlink stale \"" + path + "\"");
  return Ok{};
}

}  // namespace

Status accept_descriptors(int control, bool accept) {
  int pass_rights = accept ? 1 : 0;
  if (::setsockopt(control, SOL_SOCKET, SO_PASSRIGHTS, &pass_rights, sizeof pass_rights) != 0 &&
      errno != ENOPROTOOPT && errno != EINVAL) {
    return errno_error("setsockopt(SO_PASSRIGHTS) on the control socket");
  }
  return Ok{};
}

Result<ControlSocket> open_control_socket(const std::string& path, mode_t mode, std::vector<HandoverItem>& passed_items) {
  auto passed = take_passed(passed_items);
  if (!passed) return std::move(passed).error();
  if (passed->valid()) {
    if (auto s = refuse_descriptors(passed->get()); !s) return std::move(s).error();
    int already = 0;
    socklen_t length = sizeof already;
    const bool inherited = ::getsockopt(passed->get(), SOL_SOCKET, SO_PASSCRED, &already, &length) == 0 && already;
    if (auto s = pass_credentials(passed->get()); !s) return std::move(s).error();
    return ControlSocket{std::move(*passed), {}, inherited};
  }

  sockaddr_un address{};
  if (path.empty() || path[0] != '/' || path.size() >= sizeof address.sun_path) {
    return Error{0, EINVAL, "control path \"" + path + "\" must be absolute and shorter than 108 bytes"};
  }
  // Every directory on the way, not only the last: anyone who can write one
  // of them could swap the control socket for their own.
  const std::size_t slash = path.rfind('/');
  const std::string directory = slash == 0 ? "/" : path.substr(0, slash);
  const std::string name = path.substr(slash + 1);
  auto parent = open_trusted_directory(directory);
  if (!parent) return std::move(parent).error();
  if (auto s = remove_stale(parent->get(), name, path); !s) return std::move(s).error();

  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return errno_error("socket(AF_UNIX, SOCK_SEQPACKET)");
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size());
  // Created with mode 0, then opened up to the policy's mode: never wider than asked.
  mode_t old_mask = ::umask(0777);
  int bound = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address);
  int bind_errno = errno;
  ::umask(old_mask);
  if (bound != 0) return errno_error("bind \"" + path + "\"", bind_errno);
  auto entry = open_own_socket_file(parent->get(), name, path);
  Status ready = entry ? set_owner_and_mode(entry->get(), 0, 0, mode, path) : Status(std::move(entry).error());
  if (!ready) {
    ::unlinkat(parent->get(), name.c_str(), 0);
    return std::move(ready).error();
  }
  if (auto s = refuse_descriptors(fd.get()); !s) {
    ::unlink(path.c_str());
    return std::move(s).error();
  }
  if (auto s = pass_credentials(fd.get()); !s) {
    ::unlink(path.c_str());
    return std::move(s).error();
  }
  if (::listen(fd.get(), kControlBacklog) != 0) {
    Error e = errno_error("listen \"" + path + "\"");
    ::unlink(path.c_str());
    return e;
  }
  return ControlSocket{std::move(fd), path, true};
}

}  // namespace sockbroker::broker
