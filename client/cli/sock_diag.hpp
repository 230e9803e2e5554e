// The listening sockets of the caller's network namespace, as the kernel's
// sock_diag netlink interface reports them (what `ss -l` reads), and the
// processes holding them (what `ss -p` finds in /proc/*/fd).
#pragma once

#include <sockbroker/fd.hpp>

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace sockbroker::cli {

struct Listener {
  std::string proto;    // "tcp", "udp" or "unix"
  std::string type;     // "stream", "datagram" or "seqpacket"
  int family = 0;       // AF_INET, AF_INET6, AF_UNIX
  std::string address;  // "127.0.0.1:22", "[::]:22", "/run/x.sock", "@name" (escaped: see escape_name)
  std::string host;     // IP sockets: the address as inet_ntop writes it, with "%ifname" if scoped
  std::uint16_t port = 0;
  std::array<std::uint8_t, 16> addr_bytes{};  // for ordering IP addresses numerically
  bool wildcard = false;  // 0.0.0.0, :: or ::ffff:0.0.0.0: every interface
  std::uint64_t inode = 0;
  // Unix sockets bound to a path: the file's inode and device (st_ino, st_dev),
  // which tells which listener a path on disk belongs to.
  std::uint64_t vfs_inode = 0;
  dev_t vfs_dev = 0;
  bool has_vfs = false;
};

// Every TCP listener, bound unconnected UDP socket and listening Unix socket
// (stream and seqpacket) of the caller's network namespace, in the kernel's order.
[[nodiscard]] Result<std::vector<Listener>> dump_listeners();

// Unix socket names may hold any byte: everything outside printable ASCII,
// and '\' and '#', is written \xHH so that a name is one printable word.
[[nodiscard]] std::string escape_name(std::string_view raw);

struct Owner {
  pid_t pid = 0;
  std::string comm;  // /proc/PID/comm
  friend bool operator<(const Owner& a, const Owner& b) noexcept { return a.pid < b.pid; }
};

struct OwnerScan {
  std::map<std::uint64_t, std::vector<Owner>> by_inode;  // sorted by pid
  std::size_t unreadable = 0;  // processes whose fds we may not read (not root)
};

// Which processes hold the sockets `inodes` (scanning /proc/*/fd). Processes
// that exit during the scan are skipped.
[[nodiscard]] Result<OwnerScan> find_owners(const std::vector<std::uint64_t>& inodes);

}  // namespace sockbroker::cli
