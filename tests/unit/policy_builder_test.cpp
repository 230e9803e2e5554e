// The integration tests' PolicyBuilder (tests/integration/policy_builder.hpp)
// writes what the real loader reads, whatever a value holds.
#include <gtest/gtest.h>

#include "../integration/policy_builder.hpp"
#include "loader.hpp"

namespace {

using sockbroker::policy::load_policy_text;

TEST(PolicyBuilder, WritesAPolicyTheLoaderReadsBack) {
  const std::string awkward = "/run/a \"quoted\" \\ path\twith tab.sock";
  const std::string text = sbtest::PolicyBuilder()
                               .broker("max_clients_per_uid", "3")
                               .broker("control_mode", sbtest::toml_string("0666"))
                               .socket("web", "0.0.0.0:80")
                               .set("reuse_port", "true")
                               .allow_user("nobody")
                               .allow({{"user", "daemon"}, {"unit", "my-app.service"}})
                               .socket("app", awkward)
                               .allow_user("root")
                               .toml();
  auto result = load_policy_text(text, "built.toml");
  std::string diagnostics;
  for (const auto& d : result.diagnostics) diagnostics += d.format() + "\n";
  ASSERT_TRUE(result.policy.has_value()) << diagnostics << text;
  const auto& policy = *result.policy;
  EXPECT_EQ(policy.broker.max_clients_per_uid, 3u);
  const auto* web = policy.find("web");
  ASSERT_NE(web, nullptr);
  EXPECT_TRUE(web->reuse_port);
  ASSERT_EQ(web->allow.size(), 2u);
  EXPECT_EQ(web->allow[1].unit, "my-app.service");
  const auto* app = policy.find("app");
  ASSERT_NE(app, nullptr) << text;
  EXPECT_EQ(app->listen.text, awkward);
}

// allow_toml writes each value as given: a uid and a gid by number.
TEST(PolicyBuilder, AllowTomlWritesValuesAsTheyAre) {
  const std::string text = sbtest::PolicyBuilder()
                               .socket("web", "127.0.0.1:80")
                               .allow_toml({{"user", "65534"}})
                               .allow_toml({{"group", "1"}, {"unit", sbtest::toml_string("my-app.service")}})
                               .toml();
  EXPECT_NE(text.find("\nuser = 65534\n"), std::string::npos) << text;
  auto result = load_policy_text(text, "built.toml");
  std::string diagnostics;
  for (const auto& d : result.diagnostics) diagnostics += d.format() + "\n";
  ASSERT_TRUE(result.policy.has_value()) << diagnostics << text;
  const auto* web = result.policy->find("web");
  ASSERT_NE(web, nullptr) << text;
  ASSERT_EQ(web->allow.size(), 2u);
  EXPECT_EQ(web->allow[0].user, uid_t{65534});
  EXPECT_EQ(web->allow[1].group, gid_t{1});
  EXPECT_EQ(web->allow[1].unit, "my-app.service");
}

}  // namespace
