// Sending and receiving one SOCK_SEQPACKET datagram with descriptors attached.
// Every descriptor that arrives is owned (close-on-exec) before anyone looks at it.
#pragma once

#include <sockbroker/fd.hpp>

#include <array>
#include <cstddef>
#include <span>

namespace sockbroker::proto {

// How many descriptors one received datagram may carry before the rest are
// discarded by the kernel (and MSG_CTRUNC is reported).
inline constexpr std::size_t kMaxReceivedFds = 4;

struct Received {
  std::size_t size = 0;                            // bytes of payload in the buffer
  std::array<UniqueFd, kMaxReceivedFds> fds;       // the descriptors that fit, owned
  std::size_t fd_count = 0;
  bool truncated = false;          // MSG_TRUNC: the datagram was longer than the buffer
  bool control_truncated = false;  // MSG_CTRUNC: descriptors were dropped
};

// Sends bytes as one datagram with fd_to_pass (if >= 0) attached as SCM_RIGHTS.
// Never raises SIGPIPE. EAGAIN is returned as an Error with sys_errno EAGAIN.
[[nodiscard]] Status send_datagram(int sock, std::span<const std::byte> bytes, int fd_to_pass = -1);

// Receives one datagram into buffer. flags: extra recvmsg flags (MSG_DONTWAIT).
// A zero-byte result means an empty datagram or, on SOCK_SEQPACKET, end of
// stream; callers tell them apart with the poll events they woke for.
[[nodiscard]] Result<Received> receive_datagram(int sock, std::span<std::byte> buffer, int flags = 0);

}  // namespace sockbroker::proto
