#include "connection.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include <sockbroker/client.h>

#include "codec.hpp"
#include "datagram.hpp"

namespace sockbroker::detail {
namespace {

// The broker answers at once or not at all (it never blocks on anyone); this
// only bounds how long a client waits for a wedged or stopped broker.
constexpr int kReplyTimeoutSeconds = 10;

// The broker sent no bytes: it closed the connection.
constexpr int kHungUp = ECONNRESET;

}  // namespace

Result<UniqueFd> connect_control(const std::string& path) {
  sockaddr_un address{};
  if (path.empty() || path.size() >= sizeof address.sun_path) {
    return Error{SOCKBROKER_E_INVALID, EINVAL, "control path \"" + path + "\" is empty or longer than 107 bytes"};
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd) return Error{SOCKBROKER_E_SYSTEM, errno, std::string("socket(AF_UNIX): ") + std::strerror(errno)};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    int err = errno;
    return Error{SOCKBROKER_E_UNAVAILABLE, err,
                 "no broker at \"" + path + "\": " + std::strerror(err) + " (is sockbrokerd running?)"};
  }
  timeval timeout{kReplyTimeoutSeconds, 0};
  (void)::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  (void)::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  return fd;
}

Result<Exchanged> exchange(int connection, const proto::Request& request, int fd_to_send) {
  proto::DatagramBuffer buffer;
  auto size = proto::encode_request(request, buffer.span());
  if (!size) return std::move(size).error();
  auto sent = proto::send_datagram(connection, std::span<const std::byte>(buffer.bytes, *size), fd_to_send);
  int receive_flags = 0;
  if (!sent) {
    int err = sent.error().sys_errno;
    // A broker that refuses a connection (a limit) answers at once and hangs
    // up before we speak: its answer may be waiting for us.
    if (err != EPIPE && err != ECONNRESET) {
      return Error{SOCKBROKER_E_UNAVAILABLE, err, std::string("cannot send to the broker: ") + std::strerror(err)};
    }
    receive_flags = MSG_DONTWAIT;
  }
receive:
  auto received = proto::receive_datagram(connection, buffer.span(), receive_flags);
  if (!received && receive_flags != 0) {
    int err = sent.error().sys_errno;
    return Error{SOCKBROKER_E_UNAVAILABLE, err, std::string("cannot send to the broker: ") + std::strerror(err)};
  }
  if (!received && received.error().sys_errno == ECONNRESET) {
    // The broker answered and hung up (a refusal): the reset is reported
    // before the reply that is still queued for us.
    received = proto::receive_datagram(connection, buffer.span(), MSG_DONTWAIT);
  }
  if (!received) {
    int err = received.error().sys_errno;
    if (err == EAGAIN) {
      return Error{SOCKBROKER_E_UNAVAILABLE, ETIMEDOUT,
                   "the broker did not answer within " + std::to_string(kReplyTimeoutSeconds) + " s"};
    }
    return Error{SOCKBROKER_E_UNAVAILABLE, err, std::string("cannot read the broker's reply: ") + std::strerror(err)};
  }
  if (received->size == 0 && !received->truncated) {
    return Error{SOCKBROKER_E_UNAVAILABLE, kHungUp, "the broker closed the connection"};
  }
  if (received->truncated || received->control_truncated) {
    return Error{SOCKBROKER_E_PROTOCOL, EMSGSIZE, "the broker's reply was truncated"};
  }
  auto reply = proto::decode_reply(std::span<const std::byte>(buffer.bytes, received->size));
  if (!reply) return std::move(reply).error();
  // A watching connection's notice, ahead of the reply: not the answer.
  if (std::holds_alternative<proto::Notice>(*reply)) goto receive;

  Exchanged out{std::move(*reply), {}};
  const bool is_grant = std::holds_alternative<proto::Grant>(out.reply);
  if (is_grant) {
    if (received->fds.size() != 1) {
      return Error{SOCKBROKER_E_PROTOCOL, 0,
                   "the broker granted a socket but attached " + std::to_string(received->fds.size()) + " descriptors"};
    }
    out.fd = std::move(received->fds[0]);
  }
  // Any other descriptor that arrived is closed with `received`.
  return out;
}

Result<std::optional<proto::Notice>> receive_notice(int connection) {
  proto::DatagramBuffer buffer;
  auto received = proto::receive_datagram(connection, buffer.span(), MSG_DONTWAIT);
  if (!received) {
    const int err = received.error().sys_errno;
    if (err == EAGAIN) return std::optional<proto::Notice>{};
    return Error{SOCKBROKER_E_UNAVAILABLE, err, std::string("cannot read from the broker: ") + std::strerror(err)};
  }
  if (received->size == 0 && !received->truncated) {
    return Error{SOCKBROKER_E_UNAVAILABLE, ECONNRESET, "the broker closed the connection"};
  }
  if (received->truncated) return Error{SOCKBROKER_E_PROTOCOL, EMSGSIZE, "the broker's notice was truncated"};
  auto reply = proto::decode_reply(std::span<const std::byte>(buffer.bytes, received->size));
  if (!reply) return std::move(reply).error();
  auto* notice = std::get_if<proto::Notice>(&*reply);
  if (notice == nullptr) return Error{SOCKBROKER_E_PROTOCOL, 0, "the broker sent a reply nobody asked for"};
  return std::optional<proto::Notice>{std::move(*notice)};
}

bool connection_lost(const Error& err) noexcept {
  return err.code == SOCKBROKER_E_UNAVAILABLE &&
         (err.sys_errno == EPIPE || err.sys_errno == ECONNRESET || err.sys_errno == ENOTCONN);
}

int error_code_of(proto::ErrorCode code) noexcept {
  switch (code) {
    case proto::ErrorCode::unknown_socket: return SOCKBROKER_E_UNKNOWN;
    case proto::ErrorCode::denied: return SOCKBROKER_E_DENIED;
    case proto::ErrorCode::quota: return SOCKBROKER_E_QUOTA;
    case proto::ErrorCode::bind: return SOCKBROKER_E_BIND;
    case proto::ErrorCode::protocol: return SOCKBROKER_E_PROTOCOL;
    case proto::ErrorCode::invalid: return SOCKBROKER_E_INVALID;
    case proto::ErrorCode::system: return SOCKBROKER_E_SYSTEM;
  }
  return SOCKBROKER_E_PROTOCOL;
}

}  // namespace sockbroker::detail
