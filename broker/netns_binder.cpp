#include "netns_binder.hpp"

#include "descriptor_disposer.hpp"
#include "printable.hpp"
#include "unix_path_safety.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace sockbroker::broker {

namespace {

// The uid owning the user namespace that owns the network namespace `fd`
// (procfs has said it is one): what NS_GET_OWNER_UID reports, in the broker's
// (the initial) user namespace. nullopt when the kernel will not say.
std::optional<uid_t> namespace_owner(int fd) {
  UniqueFd user_namespace(::ioctl(fd, NS_GET_USERNS));
  if (!user_namespace) return std::nullopt;
  uid_t owner = 0;
  if (::ioctl(user_namespace.get(), NS_GET_OWNER_UID, &owner) != 0) return std::nullopt;
  return owner;
}

Status trusted(int fd, const std::string& shown) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error("fstat \"" + shown + "\"");
  if (auto why = policy::untrusted_directory(st)) return Error{0, 0, "\"" + shown + "\" " + *why};
  return Ok{};
}

// The directory of a netns_path pattern, reached from "/" one component at a
// time, following no link, each directory root's and closed to others (as for
// Unix socket paths, unix_path_safety.hpp): so what the broker finds there is
// what root put there. nullopt when a component does not exist (nothing can be
// mounted there, which is no error).
Result<std::optional<UniqueFd>> open_netns_directory(std::string_view directory) {
  UniqueFd current(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!current) return errno_error("open \"/\"");
  if (auto s = trusted(current.get(), "/"); !s) return std::move(s).error();
  std::string shown;
  for (std::size_t start = 1; start < directory.size();) {
    std::size_t end = directory.find('/', start);
    if (end == std::string_view::npos) end = directory.size();
    const std::string name(directory.substr(start, end - start));
    start = end + 1;
    shown += "/" + name;
    UniqueFd next(::openat(current.get(), name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next) {
      const int err = errno;
      if (err == ENOENT) return std::optional<UniqueFd>();
      if (err == ELOOP || err == ENOTDIR) {
        return Error{0, 0, "\"" + shown + "\" is a symbolic link or not a directory (the broker follows no link)"};
      }
      return errno_error("open \"" + shown + "\"", err);
    }
    if (auto s = trusted(next.get(), shown); !s) return std::move(s).error();
    current = std::move(next);
  }
  return std::optional<UniqueFd>(std::move(current));
}

// Where the namespace (nsfs device `dev`, inode `ino`) is mounted among the
// entries of the directory `pattern` names that match its last component; ""
// when nowhere. An entry matches only as itself (AT_SYMLINK_NOFOLLOW): a link
// to /proc/PID/ns/net is a link, not the namespace, and only root can mount.
Result<std::string> mount_matching(const std::string& pattern, dev_t dev, ino_t ino) {
  const std::size_t last = pattern.rfind('/');
  const std::string directory = pattern.substr(0, last);
  const std::string name = pattern.substr(last + 1);
  auto opened = open_netns_directory(directory);
  if (!opened) return std::move(opened).error();
  if (!*opened) return std::string();
  const int dir = (*opened)->get();
  const auto is_the_namespace = [&](const char* entry) {
    struct stat st {};
    return ::fstatat(dir, entry, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == dev && st.st_ino == ino;
  };
  const std::string prefix = directory + "/";
  if (name.find_first_of("*?[") == std::string::npos) return is_the_namespace(name.c_str()) ? prefix + name : "";

  // A wildcard: list the directory (an O_PATH descriptor cannot be read).
  UniqueFd listing(::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!listing) return errno_error("open \"" + directory + "\" to list it");
  DIR* entries = ::fdopendir(listing.get());
  if (entries == nullptr) return errno_error("fdopendir \"" + directory + "\"");
  (void)listing.release();  // closedir closes it
  std::string found;
  while (const dirent* entry = ::readdir(entries)) {
    if (::fnmatch(name.c_str(), entry->d_name, FNM_PERIOD) == 0 && is_the_namespace(entry->d_name)) {
      found = prefix + entry->d_name;
      break;
    }
  }
  ::closedir(entries);
  return found;
}

}  // namespace

Result<NamespaceFacts> inspect_network_namespace(int fd, const policy::SocketSpec* socket) {
  // Read from the descriptor's /proc link, never from the file: fstat or an
  // ioctl would call into whatever file system the client's file lives on
  // (a FUSE server can make either wait forever). Once procfs has said it is
  // a namespace, the file is nsfs's and may be asked.
  DescriptorKind kind = classify_descriptor(fd);
  if (!kind.is_namespace || kind.namespace_type != "net") {
    return Error{0, 0, "the descriptor sent with the request is " + kind.description +
                           ", not a network namespace (send an open /proc/PID/ns/net or /run/netns/NAME)"};
  }
  NamespaceFacts facts;
  facts.inode = kind.inode;
  // Asked per request, not remembered: cheap, and true of the thread that is
  // about to enter the namespace. nsfs is one file system, so the inode alone
  // names a namespace.
  struct stat own {};
  if (::stat("/proc/thread-self/ns/net", &own) != 0) {
    return errno_error("cannot tell the broker's own network namespace (/proc/thread-self/ns/net)");
  }
  facts.brokers_own = static_cast<std::uint64_t>(own.st_ino) == kind.inode;
  if (socket == nullptr || facts.brokers_own) return facts;

  const policy::NetnsAllow& allow = socket->netns_allow;
  if (allow.owned_by_requester || !allow.owners.empty()) facts.owner = namespace_owner(fd);
  for (const std::string& pattern : allow.paths) {
    auto found = mount_matching(pattern, own.st_dev, static_cast<ino_t>(kind.inode));
    if (!found) {
      facts.unsearched.push_back("netns_path " + sockbroker::quoted(pattern) + " was not searched: " + found.error().describe());
    } else if (!found->empty()) {
      facts.mounted_at = std::move(*found);
      break;
    }
  }
  return facts;
}

// Why the calling thread itself enters the namespace and comes back, rather
// than a short-lived helper thread: the broker's loop is single-threaded, so
// nobody else is served while it is away, and a thread would need clone3 in
// the seccomp allow-list. clone3's flags live in memory a filter cannot read,
// and this broker keeps CAP_SYS_ADMIN for setns: allowing clone3 would let
// code injected into it make new namespaces of every kind, which the filter
// otherwise forbids (unshare is a kill). The price is that failing to return
// must end the process: a broker stranded in a container's namespace would
// bind every later socket there. setns back into a namespace we hold open,
// with the capability that just let us leave, does not fail in practice.
Result<OpenedSocket> open_in_netns(const policy::SocketSpec& spec, int netns_fd) {
  // The way back, opened per grant so the broker keeps no extra descriptor
  // between requests; thread-self because namespaces are per thread.
  UniqueFd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!home) return errno_error("open /proc/thread-self/ns/net (the broker's own network namespace)");
  if (::setns(netns_fd, CLONE_NEWNET) != 0) return errno_error("setns into the requested network namespace");

  // Only the socket calls run over there: no logging, no audit, no NSS (any of
  // which could open a socket that would belong to the container).
  auto opened = open_policy_socket(spec);

  if (::setns(home.get(), CLONE_NEWNET) != 0) {
    // Not a logger call: nothing may run in the wrong namespace, and this is
    // the last thing the process does.
    static constexpr char kMessage[] =
        "sockbrokerd: cannot return to its own network namespace after binding in a requested one; aborting\n";
    (void)!::write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
    std::abort();
  }
  return opened;
}

}  // namespace sockbroker::broker
