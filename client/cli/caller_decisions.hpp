// `sockbroker check --as USER`: what the policy gives one caller, socket by
// socket, and for each refusal the first condition of every rule that the
// caller does not meet. Decided by the broker's own matcher (policy::decide),
// so the answer is the broker's, for the identity given here instead of the
// one the kernel reports.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include <sockbroker/fd.hpp>

#include "identity.hpp"
#include "matcher.hpp"
#include "policy.hpp"

namespace sockbroker::cli {

struct CallerSpec {
  std::string as;                   // USER or UID, optionally :GROUP (primary)
  std::vector<std::string> groups;  // supplementary groups beyond the account's
  std::optional<std::string> unit, executable, cgroup;
};

// The identity the broker would verify for a process started as `spec.as`:
// uid, primary gid (the account's unless :GROUP), and supplementary groups as
// initgroups(3) gives them (getgrouplist) plus `spec.groups`. An error (a
// usage error for the caller) names what cannot be resolved.
[[nodiscard]] Result<policy::PeerIdentity> caller_from(const CallerSpec& spec);

struct SocketDecision {
  std::string name;
  const policy::SocketSpec* socket = nullptr;  // null: no such socket
  bool granted = false;
  int rule = -1;  // index of the granting rule; -1 for root, or when refused
  struct RuleCheck {
    const policy::Rule* rule;
    policy::Mismatch mismatch;
    std::string why;  // "" when it matches; else the failing condition against the caller
  };
  std::vector<RuleCheck> rules;  // every rule, when refused
};

// The sockets named (all of the policy's when none), each decided for `peer`.
[[nodiscard]] std::vector<SocketDecision> decide_for(const policy::Policy& policy, const policy::PeerIdentity& peer,
                                                     const std::vector<std::string>& names);

// "uid 33 (www-data), gid 33 (www-data), groups 33 (www-data), unit nginx.service"
[[nodiscard]] std::string describe_caller(const policy::PeerIdentity& peer);

// Whether the broker answers this caller's `status`, `reload`, `revoke`,
// `upgrade` and `list --holders`, and why: "administrator: no (not in
// admin_group 27 (sudo))".
[[nodiscard]] std::string describe_administrator(const policy::BrokerSettings& broker, const policy::PeerIdentity& peer);

[[nodiscard]] std::string format_decisions(const std::vector<SocketDecision>& decisions);
[[nodiscard]] nlohmann::json caller_json(const policy::PeerIdentity& peer);
[[nodiscard]] nlohmann::json decisions_json(const std::vector<SocketDecision>& decisions);

// 0 when every socket named was granted; else 65 if one does not exist, 77 if
// one is refused: what `sockbroker get NAME` would exit with.
[[nodiscard]] int decisions_exit_code(const std::vector<SocketDecision>& decisions);

}  // namespace sockbroker::cli
