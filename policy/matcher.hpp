// Matching a request against the policy: a pure function of (policy, verified
// peer identity, socket name). No I/O.
#pragma once

#include <string_view>

#include "identity.hpp"
#include "policy.hpp"

namespace sockbroker::policy {

struct Decision {
  enum class Outcome { grant, unknown_socket, no_rule_matched };
  Outcome outcome = Outcome::unknown_socket;
  const SocketSpec* socket = nullptr;  // set unless unknown_socket
  int rule = -1;                       // index of the matching allow rule; -1 when granted as root
};

// Root (uid 0) is granted every socket; anyone else needs a matching rule.
[[nodiscard]] Decision decide(const Policy& policy, const PeerIdentity& peer, std::string_view name);

[[nodiscard]] bool rule_matches(const Rule& rule, const PeerIdentity& peer);

// Administrators: root, or members (primary or supplementary) of admin_group.
[[nodiscard]] bool is_admin(const BrokerSettings& broker, const PeerIdentity& peer);

}  // namespace sockbroker::policy
