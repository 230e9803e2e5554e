#include "datagram.hpp"

#include <sys/socket.h>

#include <cstring>

namespace sockbroker::proto {

Status send_datagram(int sock, std::span<const std::byte> bytes, int fd_to_pass) {
  iovec iov{const_cast<std::byte*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (fd_to_pass >= 0) {
    std::memset(control, 0, sizeof control);
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &fd_to_pass, sizeof(int));
  }
  for (;;) {
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n >= 0) {
      // SOCK_SEQPACKET sends a datagram whole or not at all.
      if (static_cast<std::size_t>(n) != bytes.size()) return errno_error("short send on a datagram socket", EMSGSIZE);
      return Ok{};
    }
    if (errno == EINTR) continue;
    return errno_error("sendmsg");
  }
}

Result<Head> peek_datagram(int sock) {
  std::byte first;
  iovec iov{&first, 1};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  // Room for the credentials only: descriptors do not fit, so the kernel
  // says MSG_CTRUNC and drops its peeked duplicates, which are never the
  // last references (the queued datagram keeps its own).
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno_error("recvmsg(MSG_PEEK)");
  if (msg.msg_flags & MSG_CTRUNC) return Head::carries_descriptors;
  bool has_credentials = false;
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_CREDENTIALS) has_credentials = true;
  }
  return n == 0 && !has_credentials ? Head::end_of_stream : Head::plain;
}

Result<Received> receive_datagram(int sock, std::span<std::byte> buffer, int flags) {
  iovec iov{buffer.data(), buffer.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxReceivedFds) + CMSG_SPACE(sizeof(ucred))];
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;

  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno_error("recvmsg");

  Received out;
  out.size = static_cast<std::size_t>(n);
  out.truncated = (msg.msg_flags & MSG_TRUNC) != 0;
  out.control_truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_CREDENTIALS &&
        cmsg->cmsg_len >= CMSG_LEN(sizeof(ucred))) {
      ucred cred;
      std::memcpy(&cred, CMSG_DATA(cmsg), sizeof cred);
      out.has_credentials = true;
      out.sender_pid = cred.pid;
      out.sender_uid = cred.uid;
      out.sender_gid = cred.gid;
      continue;
    }
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    std::size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* data = CMSG_DATA(cmsg);
    out.fds.reserve(out.fds.size() + count);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, data + i * sizeof(int), sizeof(int));
      out.fds.emplace_back(fd);  // at most kMaxReceivedFds: the control buffer takes no more
    }
  }
  return out;
}

}  // namespace sockbroker::proto
