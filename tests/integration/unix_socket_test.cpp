// How the broker creates (and refuses to create) Unix socket paths and
// abstract names: owner, group, mode, the directories on the way, squatters.
#include "granted_socket.hpp"
#include "policy_builder.hpp"

namespace {

using namespace sbgrant;
// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using UnixSocket = sbtest::BrokerTest;

// ---------------------------------------------------------------------------
// Unix socket paths

TEST_F(UnixSocket, DefaultOwnerIsRootAndDefaultModeIs0666) {
  TempDir dir;
  ASSERT_EQ(::mkdir(dir.file("run").c_str(), 0755), 0);
  std::string path = dir.file("run/app.sock");
  auto broker = Broker::start(dir, sbtest::PolicyBuilder().socket("app", path).allow_user("nobody"));
  ASSERT_TRUE(broker);
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_gid, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0666u);
  // 0666: anyone may connect, as with systemd's SocketMode= default.
  EXPECT_EQ(unix_connect_errno_as(kDaemonUid, kDaemonGid, path), 0);
  // The private directory the socket was made in is gone; nothing else appeared.
  EXPECT_EQ(entries(dir.file("run")), std::set<std::string>{"app.sock"});
}

TEST_F(UnixSocket, Mode0600OwnedByNobodyAdmitsOnlyNobody) {
  TempDir dir;
  std::string owner_only = dir.file("owner.sock");
  std::string group_only = dir.file("group.sock");
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("owner", owner_only)
                                       .set_string("socket_user", "nobody")
                                       .set_string("socket_mode", "0600")
                                       .allow_user("nobody")
                                       .socket("group", group_only)
                                       .set_string("socket_group", "nogroup")
                                       .set_string("socket_mode", "0660")
                                       .allow_user("nobody"));
  ASSERT_TRUE(broker);
  struct stat st {};
  ASSERT_EQ(::lstat(owner_only.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, sbtest::kNobody);
  EXPECT_EQ(st.st_gid, 0u);  // socket_group unset: root's group
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(unix_connect_errno_as(sbtest::kNobody, sbtest::kNogroup, owner_only), 0);
  EXPECT_EQ(unix_connect_errno_as(kDaemonUid, kDaemonGid, owner_only), EACCES);

  ASSERT_EQ(::lstat(group_only.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);  // socket_user unset: root
  EXPECT_EQ(st.st_gid, sbtest::kNogroup);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(unix_connect_errno_as(sbtest::kNobody, sbtest::kNogroup, group_only), 0);  // by its group
  EXPECT_EQ(unix_connect_errno_as(kDaemonUid, kDaemonGid, group_only), EACCES);
}

TEST_F(UnixSocket, SymlinkAtThePathIsRefusedAndLeftAlone) {
  TempDir dir;
  TempDir elsewhere;  // under /tmp: where a followed link would lead
  std::string dangling_target = elsewhere.file("elsewhere");
  std::string file_target = elsewhere.file("precious");
  elsewhere.write("precious", "do not touch\n");
  std::string dangling = dir.file("dangling.sock");
  std::string to_file = dir.file("tofile.sock");
  std::string good = dir.file("good.sock");
  ASSERT_EQ(::symlink(dangling_target.c_str(), dangling.c_str()), 0);
  ASSERT_EQ(::symlink(file_target.c_str(), to_file.c_str()), 0);
  struct stat file_before {};
  ASSERT_EQ(::stat(file_target.c_str(), &file_before), 0);

  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("dangling", dangling)
                                       .allow_user("nobody")
                                       .socket("tofile", to_file)
                                       .allow_user("nobody")
                                       .socket("good", good)
                                       .allow_user("nobody"));
  ASSERT_TRUE(broker);
  for (const char* name : {"dangling", "tofile"}) {
    json failed = bind_failed_for(*broker, name);
    ASSERT_FALSE(failed.is_null()) << name << ": " << read_text(dir.file("audit.log"));
    EXPECT_NE(failed["error"].get<std::string>().find("symbolic link"), std::string::npos) << failed;
    auto refused = acquire_as_nobody(*broker, name);
    EXPECT_FALSE(refused.granted);
    EXPECT_EQ(refused.code, SOCKBROKER_E_BIND) << refused.message;
  }
  // The links still point where they did; nothing was created or changed at
  // their targets.
  EXPECT_EQ(fs::read_symlink(dangling).string(), dangling_target);
  EXPECT_EQ(fs::read_symlink(to_file).string(), file_target);
  struct stat st {};
  EXPECT_NE(::lstat(dangling_target.c_str(), &st), 0);
  ASSERT_EQ(::stat(file_target.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_ino, file_before.st_ino);
  EXPECT_EQ(st.st_mode, file_before.st_mode);
  EXPECT_EQ(read_text(file_target), "do not touch\n");
  EXPECT_EQ(entries(elsewhere.path()), std::set<std::string>{"precious"});

  // The other socket serves.
  auto served = ping_while_served(*broker, "good", [&] { return sbtest::unix_exchange(good, "ping"); });
  ASSERT_TRUE(served.grant.granted) << served.grant.message;
  EXPECT_EQ(served.answer, "pong:ping");
  for (const auto& name : entries(dir.path())) EXPECT_EQ(name.rfind(".sockbroker", 0), std::string::npos) << name;
}

TEST_F(UnixSocket, RegularFileAtThePathIsRefusedAndLeftAlone) {
  TempDir dir;
  ASSERT_EQ(::mkdir(dir.file("run").c_str(), 0755), 0);
  std::string path = dir.file("run/app.sock");
  dir.write("run/app.sock", "not a socket\n");
  ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
  struct stat before {};
  ASSERT_EQ(::lstat(path.c_str(), &before), 0);

  auto broker = Broker::start(dir, sbtest::PolicyBuilder().socket("app", path).allow_user("nobody"));
  ASSERT_TRUE(broker);
  json failed = bind_failed_for(*broker, "app");
  ASSERT_FALSE(failed.is_null()) << read_text(dir.file("audit.log"));
  EXPECT_NE(failed["error"].get<std::string>().find("not a socket"), std::string::npos) << failed;
  EXPECT_EQ(failed["local_addr"]["sun_path"], path) << failed;

  struct stat after {};
  ASSERT_EQ(::lstat(path.c_str(), &after), 0);
  EXPECT_TRUE(S_ISREG(after.st_mode));
  EXPECT_EQ(after.st_ino, before.st_ino);
  EXPECT_EQ(after.st_mode, before.st_mode);
  EXPECT_EQ(after.st_uid, before.st_uid);
  EXPECT_EQ(read_text(path), "not a socket\n");
  EXPECT_EQ(entries(dir.file("run")), std::set<std::string>{"app.sock"});
  auto refused = acquire_as_nobody(*broker, "app");
  EXPECT_EQ(refused.code, SOCKBROKER_E_BIND) << refused.message;
}

TEST_F(UnixSocket, StaleSocketIsReplacedAndTheBrokersSocketServes) {
  TempDir dir;
  std::string path = dir.file("app.sock");
  // A previous service bound and listened here, then closed its socket: the
  // file stays behind with no one accepting on it.
  int previous = bind_unix(path, SOCK_STREAM);
  ASSERT_EQ(::listen(previous, 4), 0);
  ASSERT_EQ(::close(previous), 0);
  struct stat stale {};
  ASSERT_EQ(::lstat(path.c_str(), &stale), 0);
  ASSERT_TRUE(S_ISSOCK(stale.st_mode));
  // So that the file below can only be the broker's (its inode number may be
  // the stale one's: the broker unlinks it, then binds, and file systems
  // reuse a freed inode at once).
  ASSERT_NE(stale.st_gid, sbtest::kNogroup);
  ASSERT_NE(stale.st_mode & 07777, 0660u);

  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("app", path)
                                       .set_string("socket_mode", "0660")
                                       .set_string("socket_group", "nogroup")
                                       .allow_user("nobody"));
  ASSERT_TRUE(broker);
  EXPECT_TRUE(bound(*broker, "app")) << read_text(dir.file("audit.log"));
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_gid, sbtest::kNogroup);  // a new socket file, the broker's
  EXPECT_EQ(st.st_mode & 07777, 0660u);

  auto served = ping_while_served(*broker, "app", [&] { return sbtest::unix_exchange(path, "ping"); });
  ASSERT_TRUE(served.grant.granted) << served.grant.message;
  EXPECT_EQ(served.answer, "pong:ping");
}

// A datagram socket has no listen(2): a stale one is told from a live one by
// connect(2) being refused too.
TEST_F(UnixSocket, StaleDatagramSocketIsReplacedAndServes) {
  TempDir dir;
  std::string path = dir.file("log.sock");
  ASSERT_EQ(::close(bind_unix(path, SOCK_DGRAM)), 0);
  auto broker = Broker::start(
      dir, sbtest::PolicyBuilder().socket("log", path).set_string("type", "datagram").allow_user("nobody"));
  ASSERT_TRUE(broker);
  EXPECT_TRUE(bound(*broker, "log")) << read_text(dir.file("audit.log"));
  // Queued on the broker's socket before anyone holds it, read by the holder.
  int sender = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un address = sbtest::unix_address(path);
  EXPECT_EQ(::sendto(sender, "entry", 5, 0, reinterpret_cast<sockaddr*>(&address), sizeof address), 5)
      << std::strerror(errno);
  ::close(sender);
  auto received = acquire_as_nobody(*broker, "log", [](int fd) -> json {
    char buffer[16] = {};
    ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    return n > 0 ? std::string(buffer, static_cast<std::size_t>(n)) : std::string("<nothing>");
  });
  ASSERT_TRUE(received.granted) << received.message;
  EXPECT_EQ(received.probe, "entry");
}

// Accepts until a connection brings `expected` (the broker's liveness probe may
// be queued first, already closed): the listener still serves its owner.
bool listener_still_serves(int listener, const std::string& path) {
  std::thread client([&] { (void)sbtest::unix_exchange(path, "hello", 2000); });
  bool seen = false;
  for (int i = 0; i < 4 && !seen; ++i) {
    int conn = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) break;
    char buffer[16] = {};
    ssize_t n = ::read(conn, buffer, sizeof buffer);
    seen = n == 5 && std::string(buffer, 5) == "hello";
    ::close(conn);
  }
  client.join();
  return seen;
}

TEST_F(UnixSocket, LiveSocketAtThePathIsRefusedAndKeepsServingItsOwner) {
  TempDir dir;
  std::string path = dir.file("app.sock");
  std::string good = dir.file("good.sock");
  int other = bind_unix(path, SOCK_STREAM);
  ASSERT_EQ(::listen(other, 8), 0);
  struct stat before {};
  ASSERT_EQ(::lstat(path.c_str(), &before), 0);

  auto broker = Broker::start(
      dir, sbtest::PolicyBuilder().socket("app", path).allow_user("nobody").socket("good", good).allow_user("nobody"));
  ASSERT_TRUE(broker);
  json failed = bind_failed_for(*broker, "app");
  ASSERT_FALSE(failed.is_null()) << read_text(dir.file("audit.log"));
  EXPECT_NE(failed["error"].get<std::string>().find("another process is listening"), std::string::npos) << failed;
  struct stat after {};
  ASSERT_EQ(::lstat(path.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);
  EXPECT_TRUE(listener_still_serves(other, path));
  EXPECT_EQ(acquire_as_nobody(*broker, "app").code, SOCKBROKER_E_BIND);
  EXPECT_TRUE(acquire_as_nobody(*broker, "good").granted);
  EXPECT_EQ(entries(dir.path()).count("app.sock"), 1u);
  for (const auto& name : entries(dir.path())) EXPECT_EQ(name.rfind(".sockbroker", 0), std::string::npos) << name;
  ::close(other);
}

// A listener whose accept queue is full still has an owner: connect(2) says
// EAGAIN, not ECONNREFUSED, and the socket must not be taken for stale.
TEST_F(UnixSocket, LiveSocketWithAFullBacklogIsStillRefused) {
  TempDir dir;
  std::string path = dir.file("busy.sock");
  int other = bind_unix(path, SOCK_STREAM);
  ASSERT_EQ(::listen(other, 0), 0);
  // Fill the queue: with backlog 0 the kernel takes one connection.
  std::vector<int> queued;
  for (int i = 0; i < 4; ++i) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un address = sbtest::unix_address(path);
    int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
    queued.push_back(fd);
    if (rc != 0 && errno == EAGAIN) break;
  }
  auto broker = Broker::start(dir, sbtest::PolicyBuilder().socket("busy", path).allow_user("nobody"));
  ASSERT_TRUE(broker);
  json failed = bind_failed_for(*broker, "busy");
  ASSERT_FALSE(failed.is_null()) << read_text(dir.file("audit.log"));
  EXPECT_NE(failed["error"].get<std::string>().find("another process is listening"), std::string::npos) << failed;
  for (int fd : queued) ::close(fd);
  EXPECT_TRUE(listener_still_serves(other, path));
  ::close(other);
}

// A socket of another type bound at the path is just as alive: a stream probe
// gets EPROTOTYPE from it, which must not read as "stale".
TEST_F(UnixSocket, LiveSocketOfAnotherTypeIsRefusedAndKeepsWorking) {
  TempDir dir;
  std::string path = dir.file("log.sock");
  int other = bind_unix(path, SOCK_DGRAM);
  struct stat before {};
  ASSERT_EQ(::lstat(path.c_str(), &before), 0);

  auto broker =
      Broker::start(dir, sbtest::PolicyBuilder().socket("log", path).set_string("type", "stream").allow_user("nobody"));
  ASSERT_TRUE(broker);
  json failed = bind_failed_for(*broker, "log");
  ASSERT_FALSE(failed.is_null()) << read_text(dir.file("audit.log"));
  EXPECT_NE(failed["error"].get<std::string>().find("another process"), std::string::npos) << failed;
  struct stat after {};
  ASSERT_EQ(::lstat(path.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);

  // Its owner still receives what is sent to the path.
  int sender = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un address = sbtest::unix_address(path);
  EXPECT_EQ(::sendto(sender, "log", 3, 0, reinterpret_cast<sockaddr*>(&address), sizeof address), 3)
      << std::strerror(errno);
  char buffer[8] = {};
  EXPECT_EQ(::recv(other, buffer, sizeof buffer, MSG_DONTWAIT), 3);
  ::close(sender);
  ::close(other);
}

TEST_F(UnixSocket, MissingParentDirectoriesAreCreatedRootOwned0755) {
  TempDir dir;
  std::string path = dir.file("a/b/c/app.sock");
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("app", path)
                                       .set_string("socket_user", "nobody")
                                       .set_string("socket_mode", "0600")
                                       .allow_user("nobody"));
  ASSERT_TRUE(broker);
  for (const char* sub : {"a", "a/b", "a/b/c"}) {
    struct stat st {};
    ASSERT_EQ(::lstat(dir.file(sub).c_str(), &st), 0) << sub;
    EXPECT_TRUE(S_ISDIR(st.st_mode)) << sub;
    EXPECT_EQ(st.st_uid, 0u) << sub;
    EXPECT_EQ(st.st_gid, 0u) << sub;
    EXPECT_EQ(st.st_mode & 07777, 0755u) << sub;
  }
  EXPECT_EQ(entries(dir.file("a/b/c")), std::set<std::string>{"app.sock"});
  // nobody can reach it through the new directories.
  EXPECT_EQ(unix_connect_errno_as(sbtest::kNobody, sbtest::kNogroup, path), 0);
}

// A hardened unit may start the broker with UMask=0077: the directories it
// creates must still be 0755, or no client could reach the socket.
TEST_F(UnixSocket, MissingParentDirectoriesAre0755UnderARestrictiveUmask) {
  TempDir dir;
  std::string path = dir.file("x/y/app.sock");
  mode_t previous = ::umask(077);  // inherited by the broker we fork
  auto broker = Broker::start(dir, sbtest::PolicyBuilder().socket("app", path).allow_user("nobody"));
  ::umask(previous);
  ASSERT_TRUE(broker);
  for (const char* sub : {"x", "x/y"}) {
    struct stat st {};
    ASSERT_EQ(::lstat(dir.file(sub).c_str(), &st), 0) << sub;
    EXPECT_EQ(st.st_mode & 07777, 0755u) << sub;
  }
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0666u);
  EXPECT_EQ(unix_connect_errno_as(kDaemonUid, kDaemonGid, path), 0);
}

// Near the 107-byte limit the private directory's path would not fit in
// sun_path; the broker binds through /proc/self/fd instead.
TEST_F(UnixSocket, PathNearTheLengthLimitIsCreated) {
  TempDir dir;
  std::string base = "app.sock";
  std::size_t fill = 107 - dir.path().size() - 2 - base.size();
  std::string deep = dir.file(std::string(fill, 'd'));
  std::string path = deep + "/" + base;
  ASSERT_EQ(path.size(), 107u);
  auto broker = Broker::start(dir, sbtest::PolicyBuilder().socket("long", path).allow_user("nobody"));
  ASSERT_TRUE(broker);
  EXPECT_TRUE(bound(*broker, "long")) << read_text(dir.file("audit.log"));
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(entries(deep), std::set<std::string>{base});

  auto served = ping_while_served(*broker, "long", [&] { return sbtest::unix_exchange(path, "ping"); });
  ASSERT_TRUE(served.grant.granted) << served.grant.message;
  EXPECT_EQ(served.answer, "pong:ping");
}

TEST_F(UnixSocket, AbstractNameIsGrantedAndReachable) {
  TempDir dir;
  std::string name = unique_name("sbtest-abstract");
  auto broker = Broker::start(
      dir, sbtest::PolicyBuilder().socket("abs", "@" + name).set("allow_abstract", "true").allow_user("nobody"));
  ASSERT_TRUE(broker);
  auto pinged = ping_while_served(*broker, "abs", [&] { return abstract_exchange(name, "ping"); }, [](int fd) -> json {
    sockaddr_un bound{};
    socklen_t length = sizeof bound;
    std::string bound_name;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) == 0 &&
        length > offsetof(sockaddr_un, sun_path) + 1 && bound.sun_path[0] == '\0') {
      bound_name.assign(bound.sun_path + 1, length - offsetof(sockaddr_un, sun_path) - 1);
    }
    return json{{"bound", bound_name}, {"served", serve_one(fd)}};
  });
  const Acquired& served = pinged.grant;
  ASSERT_TRUE(served.granted) << served.message;
  EXPECT_EQ(served.family, AF_UNIX);
  EXPECT_EQ(served.address, "@" + name);
  EXPECT_EQ(served.probe["bound"], name) << served.probe;  // no trailing NUL in the name
  EXPECT_EQ(pinged.answer, "pong:ping");
}

}  // namespace
