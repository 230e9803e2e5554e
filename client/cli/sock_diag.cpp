// sock_diag (NETLINK_SOCK_DIAG) dumps of listening sockets, and the /proc scan
// that names their processes. Everything the kernel sends is length-checked
// before it is read: a short or truncated message is an error, never a guess.
//
// Not libmnl, which the broker uses for its census: Debian ships it shared
// only, and this is the `sockbroker` binary every `sockbroker run` loads
// before the service starts, where each shared library costs the loader's
// time (docs/PERFORMANCE.md, row 4); the framing here is ~60 lines.
#include "sock_diag.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <functional>
#include <memory>
#include <set>

namespace sockbroker::cli {
namespace {

// A dump whose socket tables changed under it (NLM_F_DUMP_INTR) is repeated;
// past this many attempts the host is too busy to get a consistent picture.
constexpr int kMaxDumpAttempts = 8;
// Large enough for any message the kernel puts in one dump datagram (it
// fills at most max(page size, 32 KiB) per recv).
constexpr std::size_t kReceiveBuffer = 64 * 1024;

using MessageHandler = std::function<Status(const nlmsghdr& header, const std::uint8_t* payload, std::size_t length)>;

Error diag_error(std::string_view what, int err) {
  return errno_error("sock_diag " + std::string(what), err);
}

// One request, then every reply datagram until NLMSG_DONE. Returns false in
// *interrupted when the kernel flagged the dump as inconsistent.
Status dump_once(std::string_view what, const void* request, std::size_t request_length, const MessageHandler& handle,
                 bool* interrupted) {
  *interrupted = false;
  UniqueFd nl(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl) return diag_error(std::string(what) + ": socket(AF_NETLINK, NETLINK_SOCK_DIAG)", errno);

  constexpr std::uint32_t kSeq = 1;
  std::vector<std::uint8_t> out(NLMSG_SPACE(request_length), 0);
  nlmsghdr header{};
  header.nlmsg_len = static_cast<std::uint32_t>(NLMSG_LENGTH(request_length));
  header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  header.nlmsg_seq = kSeq;
  std::memcpy(out.data(), &header, sizeof header);
  std::memcpy(out.data() + NLMSG_HDRLEN, request, request_length);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  ssize_t sent;
  do {
    sent = ::sendto(nl.get(), out.data(), header.nlmsg_len, 0, reinterpret_cast<const sockaddr*>(&kernel), sizeof kernel);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) return diag_error(std::string(what) + ": send", errno);
  if (static_cast<std::size_t>(sent) != header.nlmsg_len) return diag_error(std::string(what) + ": short send", EIO);

  // uint64_t elements: the buffer is aligned for every netlink structure.
  std::vector<std::uint64_t> storage(kReceiveBuffer / sizeof(std::uint64_t));
  auto* buffer = reinterpret_cast<std::uint8_t*>(storage.data());
  for (;;) {
    sockaddr_nl from{};
    iovec iov{buffer, kReceiveBuffer};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    ssize_t received = ::recvmsg(nl.get(), &msg, 0);
    if (received < 0) {
      if (errno == EINTR) continue;
      return diag_error(std::string(what) + ": receive", errno);
    }
    if ((msg.msg_flags & MSG_TRUNC) != 0) return diag_error(std::string(what) + ": reply larger than 64 KiB", EMSGSIZE);
    if (received == 0) return diag_error(std::string(what) + ": the kernel closed the dump early", EPROTO);
    if (from.nl_pid != 0) continue;  // not from the kernel

    auto remaining = static_cast<int>(received);  // NLMSG_OK/NLMSG_NEXT take an int
    auto* h = reinterpret_cast<nlmsghdr*>(buffer);
    for (; NLMSG_OK(h, remaining); h = NLMSG_NEXT(h, remaining)) {
      if (h->nlmsg_seq != kSeq) continue;  // a stale reply to nothing we sent
      if ((h->nlmsg_flags & NLM_F_DUMP_INTR) != 0) *interrupted = true;
      const auto* payload = static_cast<const std::uint8_t*>(NLMSG_DATA(h));
      std::size_t payload_length = h->nlmsg_len - NLMSG_HDRLEN;
      if (h->nlmsg_type == NLMSG_DONE) {
        // A dump that failed midway says so in the DONE message's payload.
        int status = 0;
        if (payload_length >= sizeof status) std::memcpy(&status, payload, sizeof status);
        if (status < 0) return diag_error(std::string(what), -status);
        return Ok{};
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        nlmsgerr err{};
        if (payload_length < sizeof err) return diag_error(std::string(what) + ": truncated error message", EPROTO);
        std::memcpy(&err, payload, sizeof err);
        if (err.error == 0) continue;  // an acknowledgement
        return diag_error(std::string(what), -err.error);
      }
      if (auto status = handle(*h, payload, payload_length); !status) return std::move(status).error();
    }
    if (remaining != 0) return diag_error(std::string(what) + ": truncated netlink message", EPROTO);
  }
}

Status dump(std::string_view what, const void* request, std::size_t request_length,
            const std::function<void()>& restart, const MessageHandler& handle) {
  for (int attempt = 0; attempt < kMaxDumpAttempts; ++attempt) {
    bool interrupted = false;
    auto status = dump_once(what, request, request_length, handle, &interrupted);
    if (!status) return status;
    if (!interrupted) return Ok{};
    restart();  // the socket tables changed during the dump: what we got may be inconsistent
  }
  return diag_error(std::string(what) + ": the socket tables kept changing during " +
                        std::to_string(kMaxDumpAttempts) + " dumps",
                    EAGAIN);
}

std::string interface_suffix(std::uint32_t ifindex) {
  if (ifindex == 0) return {};
  char name[IF_NAMESIZE] = {};
  if (::if_indextoname(ifindex, name) == nullptr) return "%" + std::to_string(ifindex);
  return std::string("%") + name;
}

Status dump_inet(int family, int protocol, std::vector<Listener>& out) {
  inet_diag_req_v2 request{};
  request.sdiag_family = static_cast<std::uint8_t>(family);
  request.sdiag_protocol = static_cast<std::uint8_t>(protocol);
  // TCP: listeners. UDP: unconnected sockets share TCP_CLOSE; those with a
  // local port are bound and receive from anyone.
  request.idiag_states = protocol == IPPROTO_TCP ? (1U << TCP_LISTEN) : (1U << TCP_CLOSE);
  std::string what = std::string(protocol == IPPROTO_TCP ? "TCP" : "UDP") + (family == AF_INET ? "/IPv4" : "/IPv6");
  std::vector<Listener> found;
  auto status = dump(
      what, &request, sizeof request, [&] { found.clear(); },
      [&](const nlmsghdr& h, const std::uint8_t* payload, std::size_t length) -> Status {
        if (h.nlmsg_type != SOCK_DIAG_BY_FAMILY) return Ok{};
        inet_diag_msg m{};
        if (length < sizeof m) return diag_error(what + ": truncated inet_diag_msg", EPROTO);
        std::memcpy(&m, payload, sizeof m);
        if (m.idiag_family != family) return Ok{};
        Listener l;
        l.proto = protocol == IPPROTO_TCP ? "tcp" : "udp";
        l.type = protocol == IPPROTO_TCP ? "stream" : "datagram";
        l.family = family;
        l.port = ntohs(m.id.idiag_sport);
        if (protocol == IPPROTO_UDP && l.port == 0) return Ok{};  // not bound
        l.inode = m.idiag_inode;
        std::memcpy(l.addr_bytes.data(), m.id.idiag_src, family == AF_INET ? 4 : 16);
        char text[INET6_ADDRSTRLEN] = {};
        if (::inet_ntop(family, l.addr_bytes.data(), text, sizeof text) == nullptr) {
          return diag_error(what + ": inet_ntop", errno);
        }
        l.host = std::string(text) + interface_suffix(m.id.idiag_if);
        l.address = family == AF_INET ? l.host + ":" + std::to_string(l.port)
                                      : "[" + l.host + "]:" + std::to_string(l.port);
        if (family == AF_INET) {
          l.wildcard = m.id.idiag_src[0] == htonl(INADDR_ANY);
        } else {
          in6_addr a{};
          std::memcpy(&a, l.addr_bytes.data(), sizeof a);
          in6_addr mapped_any{};
          mapped_any.s6_addr[10] = mapped_any.s6_addr[11] = 0xff;
          l.wildcard = IN6_IS_ADDR_UNSPECIFIED(&a) || std::memcmp(&a, &mapped_any, sizeof a) == 0;
        }
        found.push_back(std::move(l));
        return Ok{};
      });
  if (!status) return status;
  out.insert(out.end(), std::make_move_iterator(found.begin()), std::make_move_iterator(found.end()));
  return Ok{};
}

Status dump_unix(std::vector<Listener>& out) {
  unix_diag_req request{};
  request.sdiag_family = AF_UNIX;
  request.udiag_states = 1U << TCP_LISTEN;
  request.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS;
  request.udiag_cookie[0] = request.udiag_cookie[1] = INET_DIAG_NOCOOKIE;
  const std::string what = "Unix";
  std::vector<Listener> found;
  auto status = dump(
      what, &request, sizeof request, [&] { found.clear(); },
      [&](const nlmsghdr& h, const std::uint8_t* payload, std::size_t length) -> Status {
        if (h.nlmsg_type != SOCK_DIAG_BY_FAMILY) return Ok{};
        unix_diag_msg m{};
        if (length < sizeof m) return diag_error(what + ": truncated unix_diag_msg", EPROTO);
        std::memcpy(&m, payload, sizeof m);
        if (m.udiag_family != AF_UNIX || m.udiag_state != TCP_LISTEN) return Ok{};
        Listener l;
        l.proto = "unix";
        l.type = m.udiag_type == SOCK_SEQPACKET ? "seqpacket" : "stream";
        l.family = AF_UNIX;
        l.inode = m.udiag_ino;
        // The attributes follow the fixed part, each rtattr-framed and 4-aligned.
        std::size_t offset = NLMSG_ALIGN(sizeof m);
        std::string raw_name;
        bool named = false;
        while (offset + sizeof(rtattr) <= length) {
          rtattr attr{};
          std::memcpy(&attr, payload + offset, sizeof attr);
          if (attr.rta_len < sizeof attr || offset + attr.rta_len > length) {
            return diag_error(what + ": malformed attribute", EPROTO);
          }
          const std::uint8_t* data = payload + offset + RTA_LENGTH(0);
          std::size_t data_length = attr.rta_len - RTA_LENGTH(0);
          if (attr.rta_type == UNIX_DIAG_NAME) {
            raw_name.assign(reinterpret_cast<const char*>(data), data_length);
            named = true;
          } else if (attr.rta_type == UNIX_DIAG_VFS) {
            unix_diag_vfs vfs{};
            if (data_length < sizeof vfs) return diag_error(what + ": truncated UNIX_DIAG_VFS", EPROTO);
            std::memcpy(&vfs, data, sizeof vfs);
            l.vfs_inode = vfs.udiag_vfs_ino;
            // The kernel's own dev_t encoding (major << 20 | minor), not glibc's.
            l.vfs_dev = ::makedev(vfs.udiag_vfs_dev >> 20, vfs.udiag_vfs_dev & 0xfffff);
            l.has_vfs = true;
          }
          offset += RTA_ALIGN(attr.rta_len);
        }
        if (!named || raw_name.empty()) {
          l.address = "(unnamed)";
        } else if (raw_name[0] == '\0') {
          l.address = "@" + escape_name(std::string_view(raw_name).substr(1));
        } else {
          // A path bound with its terminating NUL (or more) counts it in the length.
          raw_name.resize(std::strlen(raw_name.c_str()));
          l.address = escape_name(raw_name);
        }
        found.push_back(std::move(l));
        return Ok{};
      });
  if (!status) return status;
  out.insert(out.end(), std::make_move_iterator(found.begin()), std::make_move_iterator(found.end()));
  return Ok{};
}

// "socket:[12345]" -> 12345
bool parse_socket_link(std::string_view link, std::uint64_t* inode) {
  constexpr std::string_view prefix = "socket:[";
  if (link.size() < prefix.size() + 2 || link.substr(0, prefix.size()) != prefix || link.back() != ']') return false;
  auto digits = link.substr(prefix.size(), link.size() - prefix.size() - 1);
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), *inode);
  return ec == std::errc{} && end == digits.data() + digits.size();
}

std::string read_comm(int proc_fd, const std::string& pid) {
  UniqueFd fd(::openat(proc_fd, (pid + "/comm").c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return "?";  // exited meanwhile
  char buffer[64];
  ssize_t n;
  do {
    n = ::read(fd.get(), buffer, sizeof buffer);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return "?";
  std::string comm(buffer, static_cast<std::size_t>(n));
  while (!comm.empty() && comm.back() == '\n') comm.pop_back();
  return escape_name(comm);
}

}  // namespace

std::string escape_name(std::string_view raw) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size());
  for (char c : raw) {
    auto byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte >= 0x7f || c == '\\' || c == '#') {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

Result<std::vector<Listener>> dump_listeners() {
  std::vector<Listener> out;
  for (int protocol : {IPPROTO_TCP, IPPROTO_UDP}) {
    for (int family : {AF_INET, AF_INET6}) {
      if (auto status = dump_inet(family, protocol, out); !status) return std::move(status).error();
    }
  }
  if (auto status = dump_unix(out); !status) return std::move(status).error();
  return out;
}

Result<OwnerScan> find_owners(const std::vector<std::uint64_t>& inodes) {
  const std::set<std::uint64_t> wanted(inodes.begin(), inodes.end());
  OwnerScan scan;
  UniqueFd proc(::open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!proc) return errno_error("open /proc", errno);
  UniqueFd listing(::dup(proc.get()));  // fdopendir takes ownership of its own descriptor
  if (!listing) return errno_error("dup /proc", errno);
  DIR* dir = ::fdopendir(listing.get());
  if (dir == nullptr) return errno_error("fdopendir /proc", errno);
  (void)listing.release();
  std::unique_ptr<DIR, int (*)(DIR*)> closer(dir, &::closedir);

  for (;;) {
    errno = 0;
    dirent* entry = ::readdir(dir);
    if (entry == nullptr) {
      if (errno != 0) return errno_error("read /proc", errno);
      break;
    }
    std::string pid_text = entry->d_name;
    pid_t pid = 0;
    auto [end, ec] = std::from_chars(pid_text.data(), pid_text.data() + pid_text.size(), pid);
    if (ec != std::errc{} || end != pid_text.data() + pid_text.size() || pid <= 0) continue;

    UniqueFd fds(::openat(proc.get(), (pid_text + "/fd").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fds) {
      if (errno == ENOENT || errno == ESRCH) continue;  // exited since readdir
      ++scan.unreadable;  // EACCES: another uid's process, and we are not root
      continue;
    }
    DIR* fd_dir = ::fdopendir(fds.get());
    if (fd_dir == nullptr) return errno_error("fdopendir /proc/" + pid_text + "/fd", errno);
    int fd_dir_fd = fds.release();
    std::unique_ptr<DIR, int (*)(DIR*)> fd_closer(fd_dir, &::closedir);
    std::set<std::uint64_t> held;
    for (;;) {
      errno = 0;
      dirent* fd_entry = ::readdir(fd_dir);
      if (fd_entry == nullptr) {
        // A process that exits while we read its fd directory: its list ends.
        if (errno != 0 && errno != ENOENT && errno != ESRCH) {
          return errno_error("read /proc/" + pid_text + "/fd", errno);
        }
        break;
      }
      if (fd_entry->d_name[0] == '.') continue;
      char link[64];
      ssize_t n = ::readlinkat(fd_dir_fd, fd_entry->d_name, link, sizeof link);
      if (n < 0) continue;  // closed meanwhile (ENOENT), or the process exited
      std::uint64_t inode = 0;
      if (parse_socket_link(std::string_view(link, static_cast<std::size_t>(n)), &inode) && wanted.count(inode) != 0) {
        held.insert(inode);
      }
    }
    if (held.empty()) continue;
    Owner owner{pid, read_comm(proc.get(), pid_text)};
    for (std::uint64_t inode : held) scan.by_inode[inode].push_back(owner);
  }
  for (auto& [inode, owners] : scan.by_inode) std::sort(owners.begin(), owners.end());
  return scan;
}

}  // namespace sockbroker::cli
