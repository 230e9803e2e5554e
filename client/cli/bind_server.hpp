// Answers a supervised program's bind(2) and listen(2), which its seccomp
// filter sends here (SECCOMP_RET_USER_NOTIF) instead of running them:
//
// - bind of an address a policy socket has (family, type, address, port and,
//   for IPv6, IPV6_V6ONLY): the broker grants it to this process (the
//   supervisor, as the program's user), and the granted socket replaces the
//   program's descriptor (SECCOMP_IOCTL_NOTIF_ADDFD with SETFD), with what the
//   program had set on its own socket carried over; the call returns 0.
// - bind of an AF_NETLINK socket (getifaddrs, Go's net.Interfaces): bound
//   here, on a duplicate of the program's socket, with the address read.
// - any other bind: EACCES, what an unprivileged bind of a low port gets; the
//   broker audits the refusal.
// - listen on a socket the broker granted: 0 (it listens already); on any
//   other: EPERM (listen on an unbound socket would bind an ephemeral port).
//
// Nothing is ever let through with SECCOMP_USER_NOTIF_FLAG_CONTINUE: the
// kernel would read the program's memory and descriptor again, which another
// of its threads may have changed since. Whatever cannot be checked (memory
// that cannot be read, a program that is gone) fails closed.
#pragma once

#include <linux/types.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>

#include <sockbroker/client.hpp>
#include <sockbroker/fd.hpp>

#include "socket_carryover.hpp"

namespace sockbroker::cli {

class BindServer {
 public:
  // listener: from the program's filter. granted: inodes of sockets the
  // program already holds from the broker (LISTEN_FDS), which it may listen on.
  BindServer(UniqueFd listener, std::string control, std::set<std::uint64_t> granted);

  [[nodiscard]] int listener() const noexcept { return listener_.get(); }

  // Reads and answers one notification. Errors here are the supervisor's own
  // (the listener failed); a program's bad call is answered, not an error.
  [[nodiscard]] Status serve_one();

 private:
  struct Answer {
    int error = 0;  // 0: the call succeeds
    std::string note;  // printed on stderr: why a call was refused, what was carried over
  };
  // tid: the calling thread's id, which /proc and process_vm_readv take as a pid.
  Answer answer_bind(std::uint64_t id, pid_t tid, int pidfd, const __u64 args[6]);
  Answer answer_listen(std::uint64_t id, int pidfd, const __u64 args[6]);
  [[nodiscard]] bool still_waiting(std::uint64_t id) const;
  // Whether the calling thread's descriptor fd is close-on-exec.
  [[nodiscard]] bool close_on_exec(pid_t tid, int fd);

  UniqueFd listener_;
  std::string control_;
  std::optional<Client> client_;  // connected at the first bind that needs the broker
  std::set<std::uint64_t> granted_;  // inodes of the sockets the broker granted
  std::size_t notif_size_ = 0, resp_size_ = 0;
  PristineDefaults defaults_;  // carry_over's fresh-socket defaults, per kind
  pid_t fdinfo_tid_ = -1;      // whose /proc/TID/fdinfo fdinfo_dir_ is
  UniqueFd fdinfo_dir_;
};

}  // namespace sockbroker::cli
