// The rule matcher: pure, so every decision the broker makes can be replayed in
// a unit test from the identity recorded in the audit event.
#include "matcher.hpp"

#include <algorithm>

namespace sockbroker::policy {
namespace {

bool in_groups(gid_t gid, const PeerIdentity& peer) {
  return peer.gid == gid || std::find(peer.groups.begin(), peer.groups.end(), gid) != peer.groups.end();
}

// "/system.slice" covers "/system.slice" and "/system.slice/x.service" but not
// "/system.slicex": a plain string prefix would let a sibling cgroup borrow
// the rule.
bool cgroup_under(std::string_view prefix, std::string_view path) {
  if (path.substr(0, prefix.size()) != prefix) return false;
  if (path.size() == prefix.size()) return true;
  return prefix.back() == '/' || path[prefix.size()] == '/';
}

}  // namespace

Mismatch first_mismatch(const Rule& rule, const PeerIdentity& peer) {
  if (rule.user && *rule.user != peer.uid) return Mismatch::user;
  if (rule.group && !in_groups(*rule.group, peer)) return Mismatch::group;
  // An identity field the broker could not verify is absent, and absence
  // never satisfies a rule that asks for it (fail closed).
  if (rule.unit && (!peer.unit || *peer.unit != *rule.unit)) return Mismatch::unit;
  if (rule.executable && (!peer.executable || *peer.executable != *rule.executable)) return Mismatch::executable;
  if (rule.cgroup && (rule.cgroup->empty() || !peer.cgroup || !cgroup_under(*rule.cgroup, *peer.cgroup))) {
    return Mismatch::cgroup;
  }
  // The loader refuses empty rules; should one reach here anyway, it must not
  // grant to everyone.
  if (!rule.user && !rule.group && !rule.unit && !rule.executable && !rule.cgroup) return Mismatch::empty;
  return Mismatch::none;
}

bool rule_matches(const Rule& rule, const PeerIdentity& peer) { return first_mismatch(rule, peer) == Mismatch::none; }

Decision decide(const Policy& policy, const PeerIdentity& peer, std::string_view name) {
  Decision decision;
  decision.socket = policy.find(name);
  if (decision.socket == nullptr) {
    decision.outcome = Decision::Outcome::unknown_socket;
    return decision;
  }
  if (peer.uid == 0) {
    decision.outcome = Decision::Outcome::grant;
    decision.rule = -1;
    return decision;
  }
  const auto& rules = decision.socket->allow;
  for (std::size_t i = 0; i < rules.size(); ++i) {
    if (rule_matches(rules[i], peer)) {
      decision.outcome = Decision::Outcome::grant;
      decision.rule = static_cast<int>(i);
      return decision;
    }
  }
  decision.outcome = Decision::Outcome::no_rule_matched;
  return decision;
}

bool is_admin(const BrokerSettings& broker, const PeerIdentity& peer) {
  if (peer.uid == 0) return true;
  return broker.admin_group && in_groups(*broker.admin_group, peer);
}

}  // namespace sockbroker::policy
