// Unix socket paths the broker (root) creates: never through a link, never in
// a directory another user can change (security review, round 2, items 2 and
// 8), named by the policy's path (issue "every mainstream server", part 3).
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>

#include <sockbroker/client.hpp>

#include "harness.hpp"
#include "policy_builder.hpp"

namespace {

using sbtest::Broker;
using sbtest::TempDir;

// "app" at `path` for nobody; callers add settings (.set_string).
sbtest::PolicyBuilder app_socket(const std::string& path) {
  return sbtest::PolicyBuilder().socket("app", path).allow_user("nobody");
}

// The same as text, for `check`, whose diagnostics give the position of the
// listen: line 2, column 10.
std::string app_socket_text(const std::string& path) {
  return "[socket.app]\nlisten = " + sbtest::toml_string(path) + "\n[[socket.app.allow]]\nuser = \"nobody\"\n";
}

sbtest::ChildResult check(const TempDir& dir, const std::string& policy) {
  dir.write("check.toml", policy);
  return sbtest::run_command_as(0, 0, {sbtest::programs().sockbroker, "check", "--policy", dir.file("check.toml")});
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 ? st.st_mode & 07777 : 0;
}

// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using UnixPath = sbtest::BrokerTest;

TEST_F(UnixPath, CheckRefusesDirectoriesOthersCanChange) {
  TempDir dir;
  const std::string owned = dir.file("owned");
  ASSERT_EQ(::mkdir(owned.c_str(), 0755), 0);
  ASSERT_EQ(::chown(owned.c_str(), sbtest::kNobody, sbtest::kNogroup), 0);
  const std::string group = dir.file("group");
  ASSERT_EQ(::mkdir(group.c_str(), 0775), 0);
  ASSERT_EQ(::chown(group.c_str(), 0, sbtest::kNogroup), 0);
  ASSERT_EQ(::chmod(group.c_str(), 0775), 0);
  const std::string open = dir.file("open");
  ASSERT_EQ(::mkdir(open.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(open.c_str(), 0777), 0);
  ASSERT_EQ(::symlink(dir.path().c_str(), dir.file("link").c_str()), 0);

  struct Case {
    std::string path, says;
  } cases[] = {
      {owned + "/app.sock", "is owned by uid 65534, not root"},
      {owned + "/deeper/still/app.sock", "is owned by uid 65534, not root"},  // an ancestor, not only the parent
      {group + "/app.sock", "is writable by its group (gid 65534) and not sticky"},
      {open + "/app.sock", "is writable by everyone and not sticky"},
      {dir.file("link") + "/app.sock", "is a symbolic link"},
  };
  for (const auto& c : cases) {
    auto result = check(dir, app_socket_text(c.path));
    EXPECT_EQ(result.exit_code, 78) << c.path << "\n" << result.output;
    EXPECT_NE(result.output.find("check.toml:2:10: error: "), std::string::npos) << result.output;
    EXPECT_NE(result.output.find(c.says), std::string::npos) << c.path << "\n" << result.output;
  }

  // Sticky and world-writable (as /tmp) is fine: others may add entries there
  // but may not move root's. So is a directory that does not exist yet.
  const std::string sticky = dir.file("sticky");
  ASSERT_EQ(::mkdir(sticky.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(sticky.c_str(), 01777), 0);
  for (const std::string& path : {sticky + "/app.sock", dir.file("not/yet/app.sock")}) {
    auto result = check(dir, app_socket_text(path));
    EXPECT_EQ(result.exit_code, 0) << path << "\n" << result.output;
  }
}

TEST_F(UnixPath, BrokerRefusesAPolicyWhoseSocketDirectoryAUserOwns) {
  TempDir dir;
  ASSERT_EQ(::mkdir(dir.file("run").c_str(), 0755), 0);
  ASSERT_EQ(::chown(dir.file("run").c_str(), sbtest::kNobody, sbtest::kNogroup), 0);
  dir.write("policy.toml", app_socket(dir.file("run/app.sock")));
  std::string output;
  EXPECT_EQ(sbtest::run_broker_to_exit(dir, {"--policy", dir.file("policy.toml"), "--control", dir.file("control.sock")},
                                       &output),
            78);
  EXPECT_NE(output.find("is owned by uid 65534, not root"), std::string::npos) << output;
  EXPECT_NE(::access(dir.file("run/app.sock").c_str(), F_OK), 0) << "nothing was created there";
}

// The attack the review found: the owner of a directory on the path swaps it
// while the broker (re)binds there, and the broker's chmod lands on another
// file. The directory is handed to uid 65534 after the broker started (a
// policy naming it is refused outright), then the socket is revoked: the
// broker must refuse to work there and touch nothing.
TEST_F(UnixPath, RebindBelowADirectoryThatBecameAUsersTouchesNothing) {
  TempDir dir;
  ASSERT_EQ(::mkdir(dir.file("run").c_str(), 0755), 0);
  dir.write("victim", "precious\n");
  ASSERT_EQ(::chmod(dir.file("victim").c_str(), 0600), 0);
  auto broker = Broker::start(dir, app_socket(dir.file("run/app.sock")).set_string("socket_mode", "0666"));
  ASSERT_TRUE(broker);
  ASSERT_EQ(mode_of(dir.file("run/app.sock")), 0666u);

  // uid 65534 now owns the directory and points "app.sock" at the victim.
  ASSERT_EQ(::chown(dir.file("run").c_str(), sbtest::kNobody, sbtest::kNogroup), 0);
  auto planted = sbtest::run_as_nobody([&](int) {
    if (::unlink(dir.file("run/app.sock").c_str()) != 0) return 1;
    return ::symlink(dir.file("victim").c_str(), dir.file("run/app.sock").c_str()) == 0 ? 0 : 2;
  });
  ASSERT_EQ(planted.exit_code, 0) << planted.output;

  auto revoked = sbtest::cli_as_root(*broker, {"revoke", "app"});
  EXPECT_NE(revoked.exit_code, 0) << revoked.output;
  EXPECT_NE(revoked.output.find("is owned by uid 65534, not root"), std::string::npos) << revoked.output;
  EXPECT_EQ(mode_of(dir.file("victim")), 0600u) << "the broker changed a file it was led to";
  struct stat st {};
  ASSERT_EQ(::lstat(dir.file("victim").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  auto failed = broker->wait_for_events("bind_failed");
  ASSERT_FALSE(failed.empty());
  EXPECT_EQ(failed.back()["socket"], "app");
}

// A link as the last component is never followed, even in a trusted directory.
TEST_F(UnixPath, SocketPathThatIsALinkIsBindFailedAndTheLinkStays) {
  TempDir dir;
  dir.write("victim", "precious\n");
  ASSERT_EQ(::symlink(dir.file("victim").c_str(), dir.file("app.sock").c_str()), 0);
  auto broker = Broker::start(dir, app_socket(dir.file("app.sock")).socket("web", "127.0.0.1:80"));
  ASSERT_TRUE(broker);
  auto failed = broker->wait_for_events("bind_failed");
  ASSERT_FALSE(failed.empty());
  EXPECT_NE(failed.back()["error"].get<std::string>().find("symbolic link"), std::string::npos) << failed.back().dump();
  struct stat st {};
  ASSERT_EQ(::lstat(dir.file("app.sock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_TRUE(sbtest::grants(*broker, "web", 0, 0)) << "the other socket serves";
}

// What a program sees of its granted socket is the policy's path: nginx and
// lighttpd match inherited sockets by that name, and `ss` shows it.
TEST_F(UnixPath, GrantedSocketIsNamedByThePolicyPath) {
  TempDir dir;
  const std::string path = dir.file("run/app.sock");
  auto broker =
      Broker::start(dir, app_socket(path).set_string("socket_mode", "0660").set_string("socket_group", "nogroup"));
  ASSERT_TRUE(broker);
  auto acquired = sbtest::acquire_as_nobody(*broker, "app", [](int fd) {
    sockaddr_un address{};
    socklen_t length = sizeof address;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return nlohmann::json(nullptr);
    return nlohmann::json(std::string(address.sun_path));
  });
  ASSERT_TRUE(acquired.granted) << acquired.message;
  EXPECT_EQ(acquired.probe, path);
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(st.st_gid, sbtest::kNogroup);
  // Nothing but the socket in its directory: no private directory left behind.
  ASSERT_EQ(::lstat(dir.file("run").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 2u);
}

TEST_F(UnixPath, ControlSocketBelowAnAncestorOthersCanWriteExits71) {
  TempDir dir;
  dir.write("ok.toml", sbtest::PolicyBuilder().socket("web", "127.0.0.1:80"));
  ASSERT_EQ(::mkdir(dir.file("open").c_str(), 0777), 0);
  ASSERT_EQ(::chmod(dir.file("open").c_str(), 0777), 0);
  std::string output;
  // The writable directory is an ancestor: the parent itself is the broker's.
  EXPECT_EQ(sbtest::run_broker_to_exit(
                dir, {"--policy", dir.file("ok.toml"), "--control", dir.file("open/sockbroker/control.sock")}, &output),
            71);
  EXPECT_NE(output.find("is writable by everyone and not sticky"), std::string::npos) << output;
  EXPECT_NE(::access(dir.file("open/sockbroker").c_str(), F_OK), 0) << "nothing was created below it";
}

}  // namespace
