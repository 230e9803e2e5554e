// The rule matcher: who gets which socket, by which rule. Pure, so every case
// is a policy value and an identity value.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "matcher.hpp"

namespace sockbroker::policy {
namespace {

PeerIdentity peer(uid_t uid, gid_t gid, std::vector<gid_t> groups = {}) {
  PeerIdentity p;
  p.pid = 4242;
  p.uid = uid;
  p.gid = gid;
  p.groups = std::move(groups);
  return p;
}

Rule user_rule(uid_t uid) {
  Rule r;
  r.user = uid;
  return r;
}

Rule group_rule(gid_t gid) {
  Rule r;
  r.group = gid;
  return r;
}

SocketSpec socket(std::string name, std::vector<Rule> rules) {
  SocketSpec s;
  s.name = std::move(name);
  s.allow = std::move(rules);
  return s;
}

// Sorted by name, as the loader leaves it.
Policy demo_policy() {
  Policy p;
  p.sockets.push_back(socket("admin-api", {user_rule(33)}));
  p.sockets.push_back(socket("dns", {group_rule(65534)}));
  p.sockets.push_back(socket("locked", {}));
  p.sockets.push_back(socket("web", {user_rule(33), user_rule(65534)}));
  return p;
}

TEST(PolicyFind, BinarySearchOnSortedNames) {
  Policy p = demo_policy();
  ASSERT_NE(p.find("admin-api"), nullptr);
  EXPECT_EQ(p.find("admin-api")->name, "admin-api");
  ASSERT_NE(p.find("web"), nullptr);
  EXPECT_EQ(p.find("web")->name, "web");
  EXPECT_EQ(p.find("dns")->name, "dns");
  EXPECT_EQ(p.find("we"), nullptr);
  EXPECT_EQ(p.find("webs"), nullptr);
  EXPECT_EQ(p.find(""), nullptr);
  EXPECT_EQ(Policy{}.find("web"), nullptr);
}

TEST(Decide, UnknownSocket) {
  Decision d = decide(demo_policy(), peer(33, 33), "nope");
  EXPECT_EQ(d.outcome, Decision::Outcome::unknown_socket);
  EXPECT_EQ(d.socket, nullptr);
  EXPECT_EQ(d.rule, -1);
  // Even root cannot acquire what the policy does not define.
  EXPECT_EQ(decide(demo_policy(), peer(0, 0), "nope").outcome, Decision::Outcome::unknown_socket);
}

TEST(Decide, RootIsGrantedWithoutRule) {
  Policy p = demo_policy();
  Decision d = decide(p, peer(0, 0), "locked");
  EXPECT_EQ(d.outcome, Decision::Outcome::grant);
  EXPECT_EQ(d.rule, -1);
  ASSERT_NE(d.socket, nullptr);
  EXPECT_EQ(d.socket->name, "locked");
}

TEST(Decide, SocketWithoutRulesIsRootOnly) {
  Policy p = demo_policy();
  Decision d = decide(p, peer(33, 33), "locked");
  EXPECT_EQ(d.outcome, Decision::Outcome::no_rule_matched);
  ASSERT_NE(d.socket, nullptr);
  EXPECT_EQ(d.socket->name, "locked");
  EXPECT_EQ(d.rule, -1);
}

TEST(Decide, UserRule) {
  Policy p = demo_policy();
  Decision d = decide(p, peer(33, 33), "admin-api");
  EXPECT_EQ(d.outcome, Decision::Outcome::grant);
  EXPECT_EQ(d.rule, 0);
  EXPECT_EQ(decide(p, peer(65534, 65534), "admin-api").outcome, Decision::Outcome::no_rule_matched);
}

TEST(Decide, RulesAreAlternativesAndTheFirstMatchIsReported) {
  Policy p = demo_policy();
  EXPECT_EQ(decide(p, peer(33, 33), "web").rule, 0);
  Decision d = decide(p, peer(65534, 65534), "web");
  EXPECT_EQ(d.outcome, Decision::Outcome::grant);
  EXPECT_EQ(d.rule, 1);
  EXPECT_EQ(decide(p, peer(1, 1), "web").outcome, Decision::Outcome::no_rule_matched);
}

TEST(Decide, FirstMatchingRuleWinsWhenSeveralMatch) {
  Policy p;
  p.sockets.push_back(socket("s", {group_rule(1), user_rule(33), group_rule(33)}));
  Decision d = decide(p, peer(33, 33), "s");
  EXPECT_EQ(d.outcome, Decision::Outcome::grant);
  EXPECT_EQ(d.rule, 1);
}

TEST(RuleMatches, GroupPrimaryAndSupplementary) {
  Rule r = group_rule(65534);
  EXPECT_TRUE(rule_matches(r, peer(1000, 65534)));
  EXPECT_TRUE(rule_matches(r, peer(1000, 1000, {4, 65534, 27})));
  EXPECT_FALSE(rule_matches(r, peer(1000, 1000, {4, 27})));
  EXPECT_FALSE(rule_matches(r, peer(65534, 1000)));  // a uid equal to the gid is not the group
  EXPECT_EQ(decide(demo_policy(), peer(1000, 1000, {65534}), "dns").outcome, Decision::Outcome::grant);
}

TEST(RuleMatches, UnitPresentAbsentAndExact) {
  Rule r;
  r.unit = "nginx.service";
  PeerIdentity p = peer(33, 33);
  EXPECT_FALSE(rule_matches(r, p));  // unit unknown (not verified): no match
  p.unit = "nginx.service";
  EXPECT_TRUE(rule_matches(r, p));
  p.unit = "nginx.service.d";
  EXPECT_FALSE(rule_matches(r, p));
  p.unit = "nginx";
  EXPECT_FALSE(rule_matches(r, p));
  p.unit = "";
  EXPECT_FALSE(rule_matches(r, p));
}

TEST(RuleMatches, ExecutablePresentAbsentAndExact) {
  Rule r;
  r.executable = "/usr/sbin/nginx";
  PeerIdentity p = peer(33, 33);
  EXPECT_FALSE(rule_matches(r, p));
  p.executable = "/usr/sbin/nginx";
  EXPECT_TRUE(rule_matches(r, p));
  p.executable = "/usr/sbin/nginx-debug";
  EXPECT_FALSE(rule_matches(r, p));
  p.executable = "/usr/sbin";
  EXPECT_FALSE(rule_matches(r, p));
}

TEST(RuleMatches, CgroupIsAPrefixOnSlashBoundaries) {
  Rule r;
  r.cgroup = "/system.slice";
  PeerIdentity p = peer(33, 33);
  EXPECT_FALSE(rule_matches(r, p));  // cgroup unknown
  p.cgroup = "/system.slice";
  EXPECT_TRUE(rule_matches(r, p));
  p.cgroup = "/system.slice/nginx.service";
  EXPECT_TRUE(rule_matches(r, p));
  p.cgroup = "/system.slice/a/b/c";
  EXPECT_TRUE(rule_matches(r, p));
  p.cgroup = "/system.slicex";
  EXPECT_FALSE(rule_matches(r, p));
  p.cgroup = "/system.slicex/nginx.service";
  EXPECT_FALSE(rule_matches(r, p));
  p.cgroup = "/system";
  EXPECT_FALSE(rule_matches(r, p));
  p.cgroup = "/user.slice/system.slice";
  EXPECT_FALSE(rule_matches(r, p));

  Rule root_cgroup;
  root_cgroup.cgroup = "/";
  p.cgroup = "/anything/at/all";
  EXPECT_TRUE(rule_matches(root_cgroup, p));
}

// A rule with every condition: nginx as www-data (33), in its own unit.
Rule nginx_rule() {
  Rule r;
  r.user = 33;
  r.group = 33;
  r.unit = "nginx.service";
  r.executable = "/usr/sbin/nginx";
  r.cgroup = "/system.slice/nginx.service";
  return r;
}

TEST(RuleMatches, AllFieldsOfARuleMustMatch) {
  const Rule r = nginx_rule();

  PeerIdentity p = peer(33, 33);
  p.unit = "nginx.service";
  p.executable = "/usr/sbin/nginx";
  p.cgroup = "/system.slice/nginx.service";
  EXPECT_TRUE(rule_matches(r, p));

  PeerIdentity wrong_user = p;
  wrong_user.uid = 34;
  EXPECT_FALSE(rule_matches(r, wrong_user));
  PeerIdentity wrong_group = p;
  wrong_group.gid = 34;
  EXPECT_FALSE(rule_matches(r, wrong_group));
  PeerIdentity wrong_unit = p;
  wrong_unit.unit = "apache2.service";
  EXPECT_FALSE(rule_matches(r, wrong_unit));
  PeerIdentity no_exe = p;
  no_exe.executable.reset();
  EXPECT_FALSE(rule_matches(r, no_exe));
  PeerIdentity other_cgroup = p;
  other_cgroup.cgroup = "/system.slice/apache2.service";
  EXPECT_FALSE(rule_matches(r, other_cgroup));
}

TEST(RuleMatches, EmptyRuleMatchesNobody) {
  // The loader refuses it; the matcher fails closed regardless.
  EXPECT_FALSE(rule_matches(Rule{}, peer(33, 33)));
}

// `sockbroker check --as` explains a refusal by the first condition that
// fails, in the rule's written order of fields: it must be a condition that
// really fails, and none exactly when the rule matches.
TEST(FirstMismatch, NamesTheFirstConditionThatFailsAndNoneWhenTheRuleMatches) {
  const Rule r = nginx_rule();
  PeerIdentity p = peer(1000, 1000);
  EXPECT_EQ(first_mismatch(r, p), Mismatch::user);
  p.uid = 33;
  EXPECT_EQ(first_mismatch(r, p), Mismatch::group);
  p.groups = {33};
  EXPECT_EQ(first_mismatch(r, p), Mismatch::unit);  // not known: fails closed
  p.unit = "nginx.service";
  EXPECT_EQ(first_mismatch(r, p), Mismatch::executable);
  p.executable = "/usr/sbin/nginx";
  EXPECT_EQ(first_mismatch(r, p), Mismatch::cgroup);
  p.cgroup = "/system.slicex/nginx.service";
  EXPECT_EQ(first_mismatch(r, p), Mismatch::cgroup);
  p.cgroup = "/system.slice/nginx.service";
  EXPECT_EQ(first_mismatch(r, p), Mismatch::none);
  EXPECT_TRUE(rule_matches(r, p));
  EXPECT_EQ(first_mismatch(Rule{}, p), Mismatch::empty);
  EXPECT_FALSE(rule_matches(Rule{}, p));
}

TEST(IsAdmin, RootAndAdminGroup) {
  BrokerSettings none;
  EXPECT_TRUE(is_admin(none, peer(0, 0)));
  EXPECT_FALSE(is_admin(none, peer(33, 33)));

  BrokerSettings with_group;
  with_group.admin_group = 27;
  EXPECT_TRUE(is_admin(with_group, peer(0, 1234)));
  EXPECT_TRUE(is_admin(with_group, peer(1000, 27)));
  EXPECT_TRUE(is_admin(with_group, peer(1000, 1000, {24, 27})));
  EXPECT_FALSE(is_admin(with_group, peer(1000, 1000, {24, 25})));
  EXPECT_FALSE(is_admin(with_group, peer(27, 1000)));
}

}  // namespace
}  // namespace sockbroker::policy
