#include "member_census.hpp"

#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>

#include <cstring>
#include <memory>
#include <vector>

namespace sockbroker::broker {
namespace {

struct MnlClose {
  void operator()(mnl_socket* socket) const noexcept { ::mnl_socket_close(socket); }
};

struct Census {
  int family;
  std::uint16_t port;  // network order, as inet_diag reports it
  std::unordered_set<std::uint64_t> inodes;
};

int on_message(const nlmsghdr* header, void* data) {
  auto& census = *static_cast<Census*>(data);
  if (mnl_nlmsg_get_payload_len(header) < sizeof(inet_diag_msg)) {
    errno = EPROTO;
    return MNL_CB_ERROR;
  }
  const auto* message = static_cast<const inet_diag_msg*>(mnl_nlmsg_get_payload(header));
  if (message->idiag_family == census.family && message->id.idiag_sport == census.port) {
    census.inodes.insert(message->idiag_inode);
  }
  return MNL_CB_OK;
}

// One dump. EINTR: the kernel flagged it inconsistent (NLM_F_DUMP_INTR: the
// socket tables changed under it), and a member may be missing from it.
Result<std::unordered_set<std::uint64_t>> dump_once(const policy::SocketSpec& spec) {
  const bool stream = spec.type == SocketType::stream;
  Census census{spec.listen.family(), htons(spec.listen.port()), {}};

  std::unique_ptr<mnl_socket, MnlClose> netlink(::mnl_socket_open2(NETLINK_SOCK_DIAG, SOCK_CLOEXEC));
  if (!netlink) return errno_error("socket(AF_NETLINK, NETLINK_SOCK_DIAG)");
  if (::mnl_socket_bind(netlink.get(), 0, MNL_SOCKET_AUTOPID) != 0) return errno_error("bind(NETLINK_SOCK_DIAG)");

  // As large as the kernel fills a dump datagram (max(page size, 32 KiB)).
  std::vector<char> buffer(64 * 1024);
  nlmsghdr* header = ::mnl_nlmsg_put_header(buffer.data());
  header->nlmsg_type = SOCK_DIAG_BY_FAMILY;
  header->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  header->nlmsg_seq = static_cast<std::uint32_t>(::time(nullptr));
  auto* request = static_cast<inet_diag_req_v2*>(::mnl_nlmsg_put_extra_header(header, sizeof(inet_diag_req_v2)));
  request->sdiag_family = static_cast<std::uint8_t>(census.family);
  request->sdiag_protocol = stream ? IPPROTO_TCP : IPPROTO_UDP;
  // A member serving a stream group listens; a UDP member is bound and
  // unconnected (TCP_CLOSE is what the kernel calls that state).
  request->idiag_states = stream ? (1U << TCP_LISTEN) : (1U << TCP_CLOSE);
  const std::uint32_t sequence = header->nlmsg_seq;
  if (::mnl_socket_sendto(netlink.get(), header, header->nlmsg_len) < 0) return errno_error("sock_diag: send");

  const unsigned port_id = ::mnl_socket_get_portid(netlink.get());
  for (;;) {
    ssize_t received = ::mnl_socket_recvfrom(netlink.get(), buffer.data(), buffer.size());
    if (received < 0) {
      if (errno == EINTR) continue;
      return errno_error("sock_diag: receive");
    }
    int status = ::mnl_cb_run(buffer.data(), static_cast<std::size_t>(received), sequence, port_id, on_message, &census);
    if (status == MNL_CB_STOP) break;
    if (status == MNL_CB_ERROR) return errno_error("sock_diag: dump");
  }
  return std::move(census.inodes);
}

}  // namespace

Result<std::unordered_set<std::uint64_t>> sockets_on_port(const policy::SocketSpec& spec) {
  // A member missing from an inconsistent dump would stop counting while it
  // serves: ask again, a few times, then say so.
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto census = dump_once(spec);
    if (census || census.error().sys_errno != EINTR) return census;
  }
  return Error{0, EAGAIN, "sock_diag: the socket tables kept changing during 8 dumps"};
}

}  // namespace sockbroker::broker
