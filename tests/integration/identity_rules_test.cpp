// Who the broker grants to by unit, executable, cgroup and group, each
// checked with a real client process in a real cgroup.
#include <tuple>

#include "granted_socket.hpp"
#include "policy_builder.hpp"

namespace {

using namespace sbgrant;
// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using GroupRule = sbtest::BrokerTest;
using Identity = sbtest::BrokerTest;

// ---------------------------------------------------------------------------
// Identity rules: unit, executable, cgroup

TEST_F(Identity, UnitRuleGrantsInsideTheUnitOnly) {
  SBTEST_REQUIRE_CGROUP2();
  const std::string slice = unique_name("sbtest") + ".slice";
  TestCgroup web(slice + "/web.service");
  ASSERT_TRUE(web.ok());
  TempDir dir;
  auto broker =
      Broker::start(dir, sbtest::PolicyBuilder().socket("web", "127.0.0.1:8201").allow({{"unit", "web.service"}}));
  ASSERT_TRUE(broker);

  auto inside = acquire_with(*broker, "web", in_cgroup(web));
  EXPECT_TRUE(inside.granted) << inside.message;
  json grant = nth_decision(*broker, "grant", "web", 0);
  ASSERT_FALSE(grant.is_null());
  EXPECT_EQ(grant["peer"]["unit"], "web.service") << grant;
  EXPECT_EQ(grant["peer"]["uid"], sbtest::kNobody) << grant;
  EXPECT_EQ(grant["rule"], 0) << grant;

  auto outside = acquire_with(*broker, "web", in_root_cgroup());
  EXPECT_FALSE(outside.granted);
  EXPECT_EQ(outside.code, SOCKBROKER_E_DENIED) << outside.message;
  json deny = nth_decision(*broker, "deny", "web", 0);
  ASSERT_FALSE(deny.is_null());
  EXPECT_EQ(deny["reason"], "no_rule_matched") << deny;
  EXPECT_NE(deny["peer"]["unit"], "web.service") << deny;
}

TEST_F(Identity, ExecutableRuleMatchesTheCallersBinary) {
  TempDir dir;
  // A forked child runs this very binary: its /proc/PID/exe is ours.
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  // The same bytes at another path are another executable.
  const std::string copy = sbtest::programs().self;
  ASSERT_NE(self, copy);
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("mine", "127.0.0.1:8202")
                                       .allow({{"executable", self}})
                                       .socket("other", "127.0.0.1:8203")
                                       .allow({{"executable", copy}}));
  ASSERT_TRUE(broker);
  auto mine = acquire_as_nobody(*broker, "mine");
  EXPECT_TRUE(mine.granted) << mine.message;
  json grant = nth_decision(*broker, "grant", "mine", 0);
  ASSERT_FALSE(grant.is_null());
  EXPECT_EQ(grant["peer"]["exe"], self) << grant;

  auto other = acquire_as_nobody(*broker, "other");
  EXPECT_FALSE(other.granted);
  EXPECT_EQ(other.code, SOCKBROKER_E_DENIED) << other.message;
}

// After exec the caller is the new program: `sockbroker get` asks as itself.
TEST_F(Identity, ExecutableRuleSeesTheProgramAfterExec) {
  TempDir dir;
  const std::string cli = sbtest::programs().sockbroker;
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("cli", "127.0.0.1:8204")
                                       .allow({{"executable", cli}})
                                       .socket("notcli", "127.0.0.1:8205")
                                       .allow({{"executable", sbtest::programs().self}}));
  ASSERT_TRUE(broker);
  auto granted = sbtest::run_command_as(sbtest::kNobody, sbtest::kNogroup,
                                        {cli, "--control", broker->control(), "get", "cli", "--", "/bin/true"});
  EXPECT_EQ(granted.exit_code, 0) << granted.output;
  json grant = nth_decision(*broker, "grant", "cli", 0);
  ASSERT_FALSE(grant.is_null());
  EXPECT_EQ(grant["peer"]["exe"], cli) << grant;

  auto denied = sbtest::run_command_as(sbtest::kNobody, sbtest::kNogroup,
                                       {cli, "--control", broker->control(), "get", "notcli", "--", "/bin/true"});
  EXPECT_EQ(denied.exit_code, 77) << denied.output;
}

TEST_F(Identity, CgroupRuleIsAPrefixOnPathBoundaries) {
  SBTEST_REQUIRE_CGROUP2();
  const std::string slice = unique_name("sbtest") + ".slice";
  TestCgroup web(slice + "/web.service");
  ASSERT_TRUE(web.ok());
  ASSERT_EQ(web.path(), "/" + slice + "/web.service");
  const std::string partial = "/" + slice.substr(0, slice.size() - 3);  // "/sbtest-….sli"
  TempDir dir;
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("slice", "127.0.0.1:8206")
                                       .allow({{"cgroup", "/" + slice}})
                                       .socket("trailing", "127.0.0.1:8207")
                                       .allow({{"cgroup", "/" + slice + "/"}})
                                       .socket("exact", "127.0.0.1:8208")
                                       .allow({{"cgroup", web.path()}})
                                       .socket("partial", "127.0.0.1:8209")
                                       .allow({{"cgroup", partial}}));
  ASSERT_TRUE(broker);
  const ChildSetup in_web = in_cgroup(web);
  for (const char* name : {"slice", "trailing", "exact"}) {
    auto inside = acquire_with(*broker, name, in_web);
    EXPECT_TRUE(inside.granted) << name << ": " << inside.message;
  }
  // "/x.sli" is a string prefix of "/x.slice/…" but not a path prefix.
  auto sibling = acquire_with(*broker, "partial", in_web);
  EXPECT_FALSE(sibling.granted);
  EXPECT_EQ(sibling.code, SOCKBROKER_E_DENIED) << sibling.message;
  // Outside the slice: denied.
  auto outside = acquire_with(*broker, "slice", in_root_cgroup());
  EXPECT_FALSE(outside.granted);
  EXPECT_EQ(outside.code, SOCKBROKER_E_DENIED) << outside.message;
}

// The broker remembers a cgroup's path and unit by the cgroup's id (one
// ioctl on the caller's pidfd, Linux 6.13) after reading them once from
// /proc. Callers of two units, each asking three times: the first round reads
// /proc, the others what was remembered, and every answer must follow the
// caller's own cgroup and unit, and every audit line name that unit.
TEST_F(Identity, CallersOfCgroupsSeenBeforeAreStillToldApart) {
  SBTEST_REQUIRE_CGROUP2();
  TestCgroup web(unique_name("sbtest") + ".slice/web.service");
  TestCgroup db(unique_name("sbtest") + ".slice/db.service");
  ASSERT_TRUE(web.ok());
  ASSERT_TRUE(db.ok());
  TempDir dir;
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("web", "127.0.0.1:8230")
                                       .allow({{"unit", "web.service"}})
                                       .socket("db", "127.0.0.1:8231")
                                       .allow({{"unit", "db.service"}})
                                       .socket("db-cgroup", "127.0.0.1:8232")
                                       .allow({{"cgroup", db.path()}}));
  ASSERT_TRUE(broker);
  for (std::size_t round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    EXPECT_TRUE(acquire_with(*broker, "web", in_cgroup(web)).granted);
    EXPECT_EQ(acquire_with(*broker, "web", in_cgroup(db)).code, SOCKBROKER_E_DENIED);
    EXPECT_TRUE(acquire_with(*broker, "db", in_cgroup(db)).granted);
    EXPECT_EQ(acquire_with(*broker, "db", in_cgroup(web)).code, SOCKBROKER_E_DENIED);
    EXPECT_TRUE(acquire_with(*broker, "db-cgroup", in_cgroup(db)).granted);
    EXPECT_EQ(acquire_with(*broker, "db-cgroup", in_cgroup(web)).code, SOCKBROKER_E_DENIED);
    for (const auto& [event, socket, unit] : {std::tuple{"grant", "web", "web.service"},
                                              {"deny", "web", "db.service"},
                                              {"grant", "db", "db.service"},
                                              {"deny", "db", "web.service"}}) {
      json line = nth_decision(*broker, event, socket, round);
      ASSERT_FALSE(line.is_null()) << event << " " << socket;
      EXPECT_EQ(line["peer"]["unit"], unit) << line;
    }
  }
}

TEST_F(Identity, UserAndUnitInOneRuleMustBothMatch) {
  SBTEST_REQUIRE_CGROUP2();
  const std::string slice = unique_name("sbtest") + ".slice";
  TestCgroup web(slice + "/web.service");
  ASSERT_TRUE(web.ok());
  TempDir dir;
  auto broker = Broker::start(
      dir,
      sbtest::PolicyBuilder().socket("web", "127.0.0.1:8210").allow({{"user", "nobody"}, {"unit", "web.service"}}));
  ASSERT_TRUE(broker);
  auto both = acquire_with(*broker, "web", in_cgroup(web));
  EXPECT_TRUE(both.granted) << both.message;
  auto user_only = acquire_with(*broker, "web", in_root_cgroup());
  EXPECT_EQ(user_only.code, SOCKBROKER_E_DENIED) << user_only.message;
  auto unit_only = acquire_with(*broker, "web", in_cgroup(web, kDaemonUid, kDaemonGid));
  EXPECT_EQ(unit_only.code, SOCKBROKER_E_DENIED) << unit_only.message;
  json deny = nth_decision(*broker, "deny", "web", 1);  // the second denial: daemon's
  ASSERT_FALSE(deny.is_null());
  EXPECT_EQ(deny["peer"]["uid"], kDaemonUid) << deny;
  EXPECT_EQ(deny["peer"]["unit"], "web.service") << deny;  // the unit matched, the user did not
}

// A rule that needs a unit never matches a caller without one: in no unit at
// all, or in a slice only (where sd_pid_get_unit finds nothing).
TEST_F(Identity, UnitRuleFailsClosedForACallerWithoutAUnit) {
  SBTEST_REQUIRE_CGROUP2();
  const std::string slice = unique_name("sbtest") + ".slice";
  TestCgroup bare(slice);
  ASSERT_TRUE(bare.ok());
  TempDir dir;
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("web", "127.0.0.1:8211")
                                       .allow({{"unit", "web.service"}})
                                       .socket("sliced", "127.0.0.1:8212")
                                       .allow({{"unit", slice}}));
  ASSERT_TRUE(broker);
  std::size_t denials = 0;
  for (const auto& setup : {in_root_cgroup(), in_cgroup(bare)}) {
    auto denied = acquire_with(*broker, "web", setup);
    EXPECT_FALSE(denied.granted);
    EXPECT_EQ(denied.code, SOCKBROKER_E_DENIED) << denied.message;
    json deny = nth_decision(*broker, "deny", "web", denials++);
    ASSERT_FALSE(deny.is_null());
    EXPECT_TRUE(deny["peer"]["unit"].is_null()) << deny;
  }
  // A slice is not the caller's unit either, even when a rule names it.
  auto in_slice = acquire_with(*broker, "sliced", in_cgroup(bare));
  EXPECT_EQ(in_slice.code, SOCKBROKER_E_DENIED) << in_slice.message;
}

// systemd/sockbroker.service bounds the broker's capabilities without
// CAP_KILL, and the broker drops what it was not given. Proving that what /proc
// said still described the caller (not a successor on its pid) must not need
// the right to signal the caller, or every unit, executable and cgroup rule
// would fail closed under the shipped unit.
TEST_F(Identity, UnitRuleWorksForABrokerWithoutCapKill) {
  SBTEST_REQUIRE_CGROUP2();
  const std::string slice = unique_name("sbtest") + ".slice";
  TestCgroup web(slice + "/web.service");
  ASSERT_TRUE(web.ok());
  TempDir dir;
  const std::string policy = sbtest::PolicyBuilder().socket("web", "127.0.0.1:8213").allow({{"unit", "web.service"}});
  ChildSetup as_root;
  as_root.uid = 0;
  as_root.gid = 0;
  // In a child of its own, so that this test process keeps its bounding set.
  auto outcome = sbtest::run_as(as_root, [&](int report_fd) {
    if (::prctl(PR_CAPBSET_DROP, CAP_KILL, 0, 0, 0) != 0) {
      sbtest::report(report_fd, std::string("PR_CAPBSET_DROP: ") + std::strerror(errno));
      return 10;
    }
    auto broker = Broker::start(dir, policy);
    if (!broker) return 11;
    // What the broker runs with: CapEff from /proc/PID/status, in hex.
    std::istringstream status(read_text("/proc/" + std::to_string(broker->pid()) + "/status"));
    unsigned long long effective = ~0ULL;
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("CapEff:", 0) == 0) effective = std::stoull(line.substr(7), nullptr, 16);
    }
    auto inside = acquire_with(*broker, "web", in_cgroup(web));
    sbtest::report(report_fd, json{{"cap_kill", (effective >> CAP_KILL) & 1U},
                                   {"granted", inside.granted},
                                   {"message", inside.message}}
                                  .dump());
    return 0;
  });
  ASSERT_EQ(outcome.exit_code, 0) << outcome.output;
  json result = json::parse(outcome.output, nullptr, false);
  ASSERT_FALSE(result.is_discarded()) << outcome.output;
  EXPECT_EQ(result["cap_kill"], 0) << "the broker still had CAP_KILL: the test proves nothing";
  EXPECT_EQ(result["granted"], true) << result;
  bool unit_seen = false;
  std::istringstream audit(read_text(dir.file("audit.log")));
  for (std::string line; std::getline(audit, line);) {
    json event = json::parse(line, nullptr, false);
    if (event.is_discarded() || event.value("event", "") != "grant") continue;
    unit_seen = event["peer"]["unit"] == "web.service";
  }
  EXPECT_TRUE(unit_seen) << read_text(dir.file("audit.log"));
}

// ---------------------------------------------------------------------------
// Group rules

TEST_F(GroupRule, NamedGroupMatchesThePrimaryGid) {
  TempDir dir;
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("dns", "127.0.0.1:8301")
                                       .set_string("type", "datagram")
                                       .allow({{"group", "nogroup"}}));
  ASSERT_TRUE(broker);
  auto nobody = acquire_with(*broker, "dns", ChildSetup{});
  EXPECT_TRUE(nobody.granted) << nobody.message;
  json grant = nth_decision(*broker, "grant", "dns", 0);
  ASSERT_FALSE(grant.is_null());
  EXPECT_EQ(grant["peer"]["gid"], sbtest::kNogroup);
  EXPECT_EQ(grant["rule"], 0);
  // The same uid with another primary group and no supplementary ones.
  auto other = acquire_with(*broker, "dns", with_groups(kDaemonGid, {}));
  EXPECT_EQ(other.code, SOCKBROKER_E_DENIED) << other.message;
}

TEST_F(GroupRule, SupplementaryGroupMatches) {
  TempDir dir;
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("web", "127.0.0.1:8302")
                                       .allow({{"group", "daemon"}})
                                       .socket("bygid", "127.0.0.1:8303")
                                       .allow_toml({{"group", "1"}}));
  ASSERT_TRUE(broker);
  // Primary nogroup; daemon (gid 1) only as a supplementary group, not first.
  const ChildSetup member = with_groups(sbtest::kNogroup, {7, kDaemonGid});
  for (const char* name : {"web", "bygid"}) {
    auto granted = acquire_with(*broker, name, member);
    EXPECT_TRUE(granted.granted) << name << ": " << granted.message;
  }
  auto stranger = acquire_with(*broker, "web", with_groups(sbtest::kNogroup, {7}));
  EXPECT_EQ(stranger.code, SOCKBROKER_E_DENIED) << stranger.message;
}

}  // namespace
