// The audit trail: one JSON object per decision or state change.
//
// Field names follow Tracee's security_socket_bind event (local_addr.sa_family,
// sin_addr, sin_port, sin6_addr, sun_path) so existing detection rules read them.
#pragma once

#include <spdlog/logger.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include <sockbroker/fd.hpp>

#include "address.hpp"
#include "identity.hpp"
#include "policy.hpp"

namespace sockbroker::broker {

class Audit {
 public:
  // destination: "" (stderr, the default), "-" (stdout), "journal"
  // (structured journal entries, one SOCKBROKER_* field per key) or a file path
  // (appended to).
  [[nodiscard]] static Result<Audit> open(std::string_view destination);

  // Stamps `ts` and `event` onto fields and writes one line.
  void emit(std::string_view event, nlohmann::ordered_json fields);

 private:
  explicit Audit(std::shared_ptr<spdlog::logger> lines) : lines_(std::move(lines)) {}
  std::shared_ptr<spdlog::logger> lines_;  // null: the journal
};

// The "peer" object of an event.
[[nodiscard]] nlohmann::ordered_json peer_json(const policy::PeerIdentity& peer);
// The "local_addr" object of an event, Tracee-style.
[[nodiscard]] nlohmann::ordered_json local_addr_json(const policy::Address& address);
// The fields every event about one policy socket carries.
[[nodiscard]] nlohmann::ordered_json socket_json(const policy::SocketSpec& spec);

}  // namespace sockbroker::broker
