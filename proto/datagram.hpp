// Sending and receiving one SOCK_SEQPACKET datagram with descriptors attached.
// Every descriptor that arrives is owned (close-on-exec) before anyone looks at it.
#pragma once

#include <sys/types.h>

#include <sockbroker/fd.hpp>

#include <cstddef>
#include <span>
#include <vector>

namespace sockbroker::proto {

// The most descriptors one datagram can carry (the kernel's SCM_MAX_FD). The
// receive buffer takes them all: descriptors that did not fit would be
// released by the kernel in the receiver's context, and releasing a
// descriptor a peer chose can block (descriptor_disposer.hpp).
inline constexpr std::size_t kMaxReceivedFds = 253;

struct Received {
  std::size_t size = 0;                            // bytes of payload in the buffer
  // The descriptors that arrived, owned. A vector, empty (no allocation) for
  // the usual datagram that carries none: an array of kMaxReceivedFds made,
  // moved and destroyed on every request was most of a receive's own time.
  std::vector<UniqueFd> fds;
  bool truncated = false;          // MSG_TRUNC: the datagram was longer than the buffer
  bool control_truncated = false;  // MSG_CTRUNC: ancillary data was dropped
  // SCM_CREDENTIALS, which the kernel attaches to every datagram when the
  // receiving socket has SO_PASSCRED: who sent this very message.
  bool has_credentials = false;
  pid_t sender_pid = 0;
  uid_t sender_uid = 0;
  gid_t sender_gid = 0;

  // On a SO_PASSCRED socket a read of 0 bytes is the end of the stream only
  // when it came with no credentials: an empty datagram has them. (Without
  // them the two look the same.)
  [[nodiscard]] bool end_of_stream() const noexcept {
    return size == 0 && !truncated && fds.empty() && !has_credentials;
  }
};

// Sends bytes as one datagram with fd_to_pass (if >= 0) attached as SCM_RIGHTS.
// Never raises SIGPIPE. EAGAIN is returned as an Error with sys_errno EAGAIN.
[[nodiscard]] Status send_datagram(int sock, std::span<const std::byte> bytes, int fd_to_pass = -1);

// What the next datagram on a SO_PASSCRED socket is, learned without taking
// it and without installing any descriptor it carries (they stay with the
// datagram): the end of the stream, one that carries descriptors, or one
// that carries none. Taking the last kind with receive_datagram() cannot
// release anything the peer chose.
enum class Head { end_of_stream, carries_descriptors, plain };
[[nodiscard]] Result<Head> peek_datagram(int sock);

// Receives one datagram into buffer. flags: extra recvmsg flags (MSG_DONTWAIT).
// A zero-byte result means an empty datagram or, on SOCK_SEQPACKET, end of
// stream; callers tell them apart with the poll events they woke for.
[[nodiscard]] Result<Received> receive_datagram(int sock, std::span<std::byte> buffer, int flags = 0);

}  // namespace sockbroker::proto
