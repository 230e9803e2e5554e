// What one broker hands the next: every socket it holds, what it needs to
// know its leases, and its counters, as named descriptors. The same names
// serve systemd's file descriptor store (FDSTORE=1, FDNAME=; handed back as
// LISTEN_FDS/LISTEN_FDNAMES after `systemctl restart` or a crash with
// Restart=) and an upgrade in place (the descriptors survive execve, listed
// in a manifest).
//
//   s<entry id>                      the socket the broker bound for an entry;
//                                    its policy name is in the state (short:
//                                    systemd passes every name in one
//                                    environment variable, LISTEN_FDNAMES,
//                                    which execve caps at 128 KiB; "s<id>"
//                                    fits about 16,000 sockets)
//   state                            a memfd: counters, and who holds what
//   control                          the control socket
//   audit, disposer                  the broker's own, in an upgrade in place only
//
// Holders are named in the state by pid and start time (/proc/PID/stat),
// which a recycled pid does not repeat; reuse_port members by inode, since
// the broker keeps none (member_census.hpp).
//
// The next broker adopts a socket only if it is what the policy in force
// says (family, type, address, listening or not): a descriptor is checked,
// never trusted for its name.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <sockbroker/fd.hpp>

#include "broker_state.hpp"
#include "handover_item.hpp"
#include "logger.hpp"

namespace sockbroker::broker {

// Every socket the broker's table holds, by name, and the state's JSON (for
// the "state" memfd). The descriptors are the table's: not owned by the map.
// Reads each new holder's start time (a /proc read per holder, once).
struct Snapshot {
  std::map<std::string, int> descriptors;
  nlohmann::json state;
};
[[nodiscard]] Snapshot snapshot(BrokerState& state);
// Whether a handed-over item is a socket of the table ("s<id>", or the older
// "sock.<id>.<name>").
[[nodiscard]] bool socket_item(std::string_view name) noexcept;
[[nodiscard]] Snapshot snapshot(const BrokerState& state);

// The broker's table, leases and counters rebuilt from what a previous one
// handed over, for the policy already in state.policy: matching sockets are
// adopted (and given what the policy says of backlog, buffers and a path's
// owner and mode); holders still alive get their leases back. What does not
// match is shut down and closed; the table then binds what is missing as a
// reload would. Items taken are moved out of `items`. The caller watches the
// holders (Server does, as it starts).
struct Adopted {
  std::size_t sockets = 0, holders = 0, leases = 0, refused = 0;
};
[[nodiscard]] Adopted adopt(std::vector<HandoverItem>& items, BrokerState& state, Audit& audit, spdlog::logger& log);

// The whole of a memfd the previous image wrote; an error past max_bytes.
[[nodiscard]] Result<std::string> read_carried_text(int memfd, std::size_t max_bytes);
// Replaces a memfd's content with `text`: written over the old, then cut to
// its size, so that a broker dying half-way leaves the old text's tail, not
// an empty file.
[[nodiscard]] Status write_carried_text(int memfd, std::string_view text, const char* what);
// The state JSON, read from a memfd (bounded) or written to one.
[[nodiscard]] Result<nlohmann::json> read_state(int memfd);
[[nodiscard]] Status write_state(int memfd, const nlohmann::json& state);

}  // namespace sockbroker::broker
