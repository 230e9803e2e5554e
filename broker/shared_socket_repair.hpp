// A shared socket is one kernel socket, in the broker and in every holder:
// what one holder does to it, every holder and every later grant inherits.
// The lockdown cannot refuse these (seccomp sees a descriptor number, not
// whether it is a granted listener: docs/ARCHITECTURE.md), so the broker looks
// at its own socket before each grant of it and, while anyone holds grants,
// every second, and repairs what it finds:
//
//   what a holder did                       what the kernel shows      repair
//   shutdown(SHUT_RD|SHUT_RDWR), TCP        POLLHUP, SO_ACCEPTCONN 0   listen(2) again: the same socket,
//     listener: stops listening, queued                                  port and holders; Linux lets it
//     connections reset, new ones refused
//   shutdown(SHUT_RD), Unix listener or     POLLRDHUP                  none clears it: bound afresh, as a
//     datagram socket: connections refused,                              revoke would (holders told); a port
//     reads return 0 at once                                             still held by holders is retried
//   connect(2) of a datagram socket: it     getpeername succeeds       connect(AF_UNSPEC): the bind stays
//     receives from that one peer only
//
// Each repair is a `relisten` audit event and a log line. shutdown(SHUT_WR)
// of a listener changes nothing a client sees, and is left alone.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

#include "audit.hpp"
#include "broker_state.hpp"
#include "logger.hpp"
#include "policy.hpp"

namespace sockbroker::broker {

enum class Damage : std::uint8_t {
  none,
  not_listening,  // a stream listener shut down for reading
  reading_shut,   // a Unix listener or a datagram socket shut down for reading
  connected,      // a datagram socket connected to one peer
};
[[nodiscard]] const char* to_string(Damage damage) noexcept;

// What poll(2) (and for a datagram socket getpeername(2)) shows of the
// broker's own socket of a shared entry. none when it cannot tell.
[[nodiscard]] Damage inspect_shared_socket(int fd, const policy::SocketSpec& spec) noexcept;

// Repairs the entry's socket, found as `damage`, audits and logs it.
// noticed: "grant", "check" or "list", for the event. The entry may be bound afresh
// (a new id), or be failed and retried with backoff.
void repair_shared_socket(BrokerState& state, TableEntry& entry, Damage damage, std::string_view noticed, Audit& audit,
                          spdlog::logger& log);

// How often every shared socket is looked at while any process holds grants.
inline constexpr std::chrono::seconds kSharedSocketCheckInterval{1};

// Looks at every shared socket (one poll(2) for them all) if the check is
// due, or now if `now_anyway` (an administrator's listing must not call a
// broken socket bound), and repairs what it finds.
void check_shared_sockets(BrokerState& state, std::chrono::steady_clock::time_point now, Audit& audit,
                          spdlog::logger& log, bool now_anyway = false);
// When the loop must call check_shared_sockets(); none while no process holds
// a grant (a socket damaged by a holder that has exited is repaired at its
// next grant).
[[nodiscard]] std::optional<std::chrono::steady_clock::time_point> next_shared_socket_check(const BrokerState& state);

}  // namespace sockbroker::broker
