// The client's half of the protocol: connect, one request out, one reply (and
// maybe a descriptor) in. Internal to libsockbroker.
#pragma once

#include <sockbroker/fd.hpp>

#include <string>

#include "messages.hpp"

namespace sockbroker::detail {

// Connects to the control socket. A missing or unanswered path is
// SOCKBROKER_E_UNAVAILABLE, with a message naming the path.
[[nodiscard]] Result<UniqueFd> connect_control(const std::string& path);

struct Exchanged {
  proto::Reply reply;
  UniqueFd fd;  // the granted descriptor, with a Grant reply only
};

// Sends request (with fd_to_send attached if >= 0) and waits for its reply.
// The broker's Failure replies come back as values, not errors; errors mean the
// exchange itself failed. sys_errno EPIPE/ECONNRESET, or a reply of zero bytes,
// mean the broker had closed the connection (an idle one, usually).
[[nodiscard]] Result<Exchanged> exchange(int connection, const proto::Request& request, int fd_to_send = -1);

// A notice queued on a watching connection, without blocking: nullopt if none.
// A reply of another kind is a protocol error; the broker hanging up is
// SOCKBROKER_E_UNAVAILABLE (connection_lost() is true of it).
[[nodiscard]] Result<std::optional<proto::Notice>> receive_notice(int connection);

// True when err says the broker hung up, so a fresh connection may succeed.
[[nodiscard]] bool connection_lost(const Error& err) noexcept;

// proto::ErrorCode -> SOCKBROKER_E_*.
[[nodiscard]] int error_code_of(proto::ErrorCode code) noexcept;

}  // namespace sockbroker::detail
