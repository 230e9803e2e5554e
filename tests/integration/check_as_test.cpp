// `sockbroker check --as`: what the policy gives one caller, decided without
// a broker. It must agree with the broker itself, asked by a real caller of
// that identity, and explain each refusal rule by rule.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "policy_builder.hpp"

namespace {

using sbtest::Broker;
using sbtest::TempDir;

using CheckAs = sbtest::BrokerTest;

std::string self_executable() { return std::filesystem::read_symlink("/proc/self/exe").string(); }

sbtest::ChildResult check_as(const std::string& policy_file, const std::vector<std::string>& args) {
  std::vector<std::string> argv{sbtest::programs().sockbroker, "check", "--policy", policy_file};
  argv.insert(argv.end(), args.begin(), args.end());
  return sbtest::run_command_as(sbtest::kNobody, sbtest::kNogroup, argv);
}

// Every kind of condition, met and not met, and a socket only root gets.
sbtest::PolicyBuilder every_kind_of_rule() {
  int port = 21900;
  auto next = [&] { return "127.0.0.1:" + std::to_string(port++); };
  return sbtest::PolicyBuilder()
      .socket("by_user", next())
      .allow_user("nobody")
      .socket("by_other_user", next())
      .allow_user("daemon")
      .socket("by_group", next())
      .allow({{"group", "nogroup"}})
      .socket("by_other_group", next())
      .allow({{"group", "daemon"}})
      .socket("by_executable", next())
      .allow({{"user", "nobody"}, {"executable", self_executable()}})
      .socket("by_other_executable", next())
      .allow({{"user", "nobody"}, {"executable", "/usr/sbin/nginx"}})
      .socket("by_unit", next())
      .allow({{"user", "nobody"}, {"unit", "sockbroker-never.service"}})
      .socket("by_cgroup", next())
      .allow({{"user", "nobody"}, {"cgroup", "/sockbroker-never.slice"}})
      .socket("second_rule", next())
      .allow_user("daemon")
      .allow({{"group", "nogroup"}})
      .socket("root_only", next());
}

// For each socket: what the broker does for a process of uid/gid 65534
// running this binary, and what `check --as` says it does.
TEST_F(CheckAs, AgreesWithTheBrokerForARealCallerOfThatIdentity) {
  TempDir dir;
  auto broker = Broker::start(dir, every_kind_of_rule());
  ASSERT_TRUE(broker);
  const std::vector<std::pair<std::string, bool>> expected{
      {"by_user", true},         {"by_other_user", false},       {"by_group", true}, {"by_other_group", false},
      {"by_executable", true},   {"by_other_executable", false}, {"by_unit", false}, {"by_cgroup", false},
      {"second_rule", true},     {"root_only", false}};
  for (const auto& [name, granted] : expected) {
    const bool broker_grants = static_cast<bool>(sbtest::grants(*broker, name));
    auto predicted = check_as(dir.file("policy.toml"),
                              {"--as", "nobody:nogroup", "--executable", self_executable(), "--socket", name});
    EXPECT_EQ(broker_grants, granted) << name;
    EXPECT_EQ(predicted.exit_code, granted ? 0 : 77) << name << "\n" << predicted.output;
  }
}

TEST_F(CheckAs, ExplainsEveryRuleOfARefusal) {
  TempDir dir;
  dir.write("policy.toml", every_kind_of_rule());
  const std::string file = dir.file("policy.toml");

  auto json = check_as(file, {"--as", "nobody", "--socket", "second_rule", "--socket", "by_unit", "--json"});
  EXPECT_EQ(json.exit_code, 77) << json.output;
  auto parsed = nlohmann::json::parse(json.output, nullptr, false);
  ASSERT_TRUE(parsed.is_object()) << json.output;
  EXPECT_EQ(parsed["caller"]["uid"], sbtest::kNobody);
  EXPECT_EQ(parsed["caller"]["gid"], sbtest::kNogroup);
  EXPECT_TRUE(parsed["caller"]["unit"].is_null());
  ASSERT_EQ(parsed["decisions"].size(), 2u) << json.output;
  const auto& second = parsed["decisions"][0];
  EXPECT_EQ(second["name"], "second_rule");
  EXPECT_EQ(second["decision"], "grant");
  EXPECT_EQ(second["rule"]["index"], 2);
  EXPECT_EQ(second["rule"]["file"], file);
  const auto& unit = parsed["decisions"][1];
  EXPECT_EQ(unit["decision"], "no_rule_matched");
  ASSERT_EQ(unit["rules"].size(), 1u);
  EXPECT_EQ(unit["rules"][0]["fails_on"], "unit");
  EXPECT_EQ(unit["rules"][0]["why"],
            "needs unit \"sockbroker-never.service\"; the caller's unit is not known (give --unit)");

  // Given the unit, the same rule matches.
  auto with_unit = check_as(file, {"--as", "nobody", "--unit", "sockbroker-never.service", "--socket", "by_unit"});
  EXPECT_EQ(with_unit.exit_code, 0) << with_unit.output;

  // For people: a table, then one line per rule of each refusal.
  auto human = check_as(file, {"--as", "nobody", "--socket", "by_other_user", "--socket", "by_group", "--socket",
                               "root_only"});
  EXPECT_EQ(human.exit_code, 77) << human.output;
  EXPECT_NE(human.output.find("as uid 65534 (nobody), gid 65534 (nogroup)"), std::string::npos) << human.output;
  EXPECT_NE(human.output.find("\nSOCKET "), std::string::npos) << human.output;
  EXPECT_NE(human.output.find("by_other_user: rule 1 (" + file + ":"), std::string::npos) << human.output;
  EXPECT_NE(human.output.find(") needs uid 1 (daemon); the caller is uid 65534 (nobody)\n"), std::string::npos)
      << human.output;
  EXPECT_NE(human.output.find("no allow rule: root's alone"), std::string::npos) << human.output;
  EXPECT_NE(human.output.find("\nadministrator (status, reload, revoke, upgrade): no (the policy sets no admin_group)\n"),
            std::string::npos)
      << human.output;
  EXPECT_EQ(parsed["caller"]["admin"], false);

  // Administrators: root, or a member of admin_group, as the broker decides.
  dir.write("admin.toml", sbtest::PolicyBuilder()
                              .broker("admin_group", sbtest::toml_string("daemon"))
                              .socket("web", "127.0.0.1:21950")
                              .allow_user("nobody")
                              .toml());
  auto member = check_as(dir.file("admin.toml"), {"--as", "nobody", "--group", "daemon"});
  EXPECT_NE(member.output.find(": yes (in admin_group 1 (daemon))\n"), std::string::npos) << member.output;
  auto other = check_as(dir.file("admin.toml"), {"--as", "nobody", "--json"});
  EXPECT_EQ(nlohmann::json::parse(other.output, nullptr, false)["caller"]["admin"], false) << other.output;

  // Root gets everything; a socket the policy lacks is 65, as `get` would exit.
  auto root = check_as(file, {"--as", "root", "--socket", "root_only"});
  EXPECT_EQ(root.exit_code, 0) << root.output;
  EXPECT_NE(root.output.find("root gets every socket"), std::string::npos) << root.output;
  auto missing = check_as(file, {"--as", "nobody", "--socket", "by_user", "--socket", "nope"});
  EXPECT_EQ(missing.exit_code, 65) << missing.output;
  // Without --socket it lists every socket and exits 0 for a valid policy.
  auto all = check_as(file, {"--as", "nobody"});
  EXPECT_EQ(all.exit_code, 0) << all.output;
  EXPECT_NE(all.output.find("root_only"), std::string::npos) << all.output;
}

TEST_F(CheckAs, AnIdentityThatCannotBeResolvedIsAUsageError) {
  TempDir dir;
  dir.write("policy.toml", every_kind_of_rule());
  const std::string file = dir.file("policy.toml");
  auto unknown = check_as(file, {"--as", "sockbroker-no-such-user"});
  EXPECT_EQ(unknown.exit_code, 64) << unknown.output;
  EXPECT_NE(unknown.output.find("no user \"sockbroker-no-such-user\""), std::string::npos) << unknown.output;
  auto no_account = check_as(file, {"--as", "54321"});
  EXPECT_EQ(no_account.exit_code, 64) << no_account.output;
  EXPECT_NE(no_account.output.find("--as 54321:GROUP"), std::string::npos) << no_account.output;
  auto numeric = check_as(file, {"--as", "54321:65534", "--socket", "by_group"});
  EXPECT_EQ(numeric.exit_code, 0) << numeric.output;
  auto no_group = check_as(file, {"--as", "nobody", "--group", "sockbroker-no-such-group"});
  EXPECT_EQ(no_group.exit_code, 64) << no_group.output;
  auto without_as = check_as(file, {"--unit", "x.service"});
  EXPECT_EQ(without_as.exit_code, 64) << without_as.output;
}

}  // namespace
