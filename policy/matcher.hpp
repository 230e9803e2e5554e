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

// The first condition of `rule`, in the order user, group, unit, executable,
// cgroup, that `peer` does not meet; none when the rule matches, empty for a
// rule with no condition (which matches no one). rule_matches is this == none,
// so `sockbroker check --as` explains exactly what the broker decides.
enum class Mismatch { none, user, group, unit, executable, cgroup, empty };
[[nodiscard]] Mismatch first_mismatch(const Rule& rule, const PeerIdentity& peer);

// Administrators: root, or members (primary or supplementary) of admin_group.
[[nodiscard]] bool is_admin(const BrokerSettings& broker, const PeerIdentity& peer);

}  // namespace sockbroker::policy
