// The audit trail on a file system that fills up, for real: a 64 KiB tmpfs in
// a private mount namespace as the audit directory. The trail must hold whole
// lines only, grants must stop while it cannot be written (audit_failure =
// "deny", the default) or go on when the policy says "continue", `status`
// must say so, and once there is room again every line kept meanwhile must
// reach the file with an `audit_resumed` event, even across an upgrade in
// place, a restart or a crash under systemd (its store, fake_fd_store.hpp).
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include <sockbroker/client.hpp>

#include "fake_fd_store.hpp"
#include "harness.hpp"
#include "policy_builder.hpp"

namespace {

using sbtest::Broker;
using sbtest::FakeFdStore;
using sbtest::start_under;
using sbtest::TempDir;

sbtest::PolicyBuilder web_only() { return sbtest::PolicyBuilder().socket("web", "127.0.0.1:80").allow_user("nobody"); }

// A tmpfs of `size` mounted at dir/name in this process's own mount namespace
// (so nothing leaks to the host), unmounted before the directory is removed.
class SmallFileSystem {
 public:
  SmallFileSystem(const TempDir& dir, const std::string& name, const char* size) : path_(dir.file(name)) {
    static bool unshared = false;
    if (!unshared) {
      if (::unshare(CLONE_NEWNS) != 0) {
        error_ = std::string("unshare(CLONE_NEWNS): ") + std::strerror(errno);
        return;
      }
      if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
        error_ = std::string("mount --make-rprivate /: ") + std::strerror(errno);
        return;
      }
      unshared = true;
    }
    ::mkdir(path_.c_str(), 0755);
    const std::string options = std::string("size=") + size + ",mode=0755";
    if (::mount("tmpfs", path_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options.c_str()) != 0) {
      error_ = std::string("mount tmpfs: ") + std::strerror(errno);
      return;
    }
    mounted_ = true;
  }
  ~SmallFileSystem() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  [[nodiscard]] const std::string& error() const { return error_; }
  [[nodiscard]] std::string file(const std::string& name) const { return path_ + "/" + name; }

  // Writes a file until the file system refuses more; returns its size.
  std::size_t fill(const std::string& name) const {
    sockbroker::UniqueFd fd(::open(file(name).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    EXPECT_TRUE(fd) << std::strerror(errno);
    std::string block(512, 'f');
    std::size_t total = 0;
    for (;;) {
      ssize_t n = ::write(fd.get(), block.data(), block.size());
      if (n <= 0) break;
      total += static_cast<std::size_t>(n);
    }
    return total;
  }

 private:
  std::string path_;
  std::string error_;
  bool mounted_ = false;
};

struct Trail {
  std::vector<nlohmann::json> events;
  std::vector<std::string> broken;  // lines that are not a whole JSON object
  bool ends_with_newline = true;
};

Trail parse_trail(const std::string& text) {
  Trail out;
  out.ends_with_newline = text.empty() || text.back() == '\n';
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    auto event = nlohmann::json::parse(line, nullptr, false);
    if (event.is_object()) {
      out.events.push_back(std::move(event));
    } else {
      out.broken.push_back(line);
    }
    start = end + 1;
  }
  return out;
}

Trail read_trail(const std::string& path) { return parse_trail(sbtest::read_file(path)); }

std::size_t count(const Trail& trail, const std::string& event) {
  std::size_t n = 0;
  for (const auto& e : trail.events) n += e.value("event", "") == event;
  return n;
}

// The life events and grants of a trail, in order (refusals left out: how
// many it took to fill the file system varies).
std::vector<std::string> sequence(const Trail& trail) {
  std::vector<std::string> out;
  for (const auto& e : trail.events) {
    const std::string event = e.value("event", "");
    if (event == "grant" || event == "upgrade" || event == "start" || event == "stop") out.push_back(event);
  }
  return out;
}

nlohmann::json status_json(const Broker& broker) {
  auto status = sbtest::cli_as_root(broker, {"status", "--json"});
  EXPECT_EQ(status.exit_code, 0) << status.output;
  return nlohmann::json::parse(status.output, nullptr, false);
}

// Refusals of root are never rate-limited: each is an audit line, enough of
// them fill what is left of the audit file's last page, and then one is cut.
void deny_root_until_failing(const Broker& broker) {
  auto client = sockbroker::Client::connect(broker.control());
  ASSERT_TRUE(client) << client.error().message;
  for (int i = 0; i < 200; ++i) {
    auto got = client->acquire("nosuch-" + std::string(200, 'x').substr(0, 100));
    ASSERT_FALSE(got);
    if (status_json(broker)["audit"]["state"] == "failing") return;
  }
  FAIL() << "the audit never failed on a full file system";
}

// Brokers whose trail is on a small file system, granting while it fails
// ("continue").
struct OnASmallDisk {
  TempDir dir;
  SmallFileSystem fs{dir, "audit-fs", "64k"};
  const std::string trail = fs.file("audit.log");
  const std::string policy = web_only().broker("audit_failure", sbtest::toml_string("continue"));

  std::optional<Broker> start(const std::string& binary = SOCKBROKERD_PATH) {
    return Broker::start(dir, policy, {"--audit", trail}, {}, binary);
  }
};

// The same under a stand-in for systemd's store (fake_fd_store.hpp).
struct UnderSystemd : OnASmallDisk {
  FakeFdStore store{dir};

  // The next broker, given what the store holds, as systemd would.
  std::optional<Broker> start(const std::string& binary = SOCKBROKERD_PATH) {
    store.drain();
    return start_under(store, dir, policy, {"--audit", trail}, store.handed(), binary);
  }
};

// The file system full, the trail failing, three grants made meanwhile.
void three_grants_unwritten(const Broker& broker, const SmallFileSystem& fs) {
  fs.fill("filler");
  ASSERT_NO_FATAL_FAILURE(deny_root_until_failing(broker));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(sbtest::grants(broker, "web"));
}

// A broker started on `disk`, whose trail has then failed with three grants
// unwritten; nullopt (the test failed) if it could not be brought there.
template <typename Disk>
std::optional<Broker> three_grants_on_a_full_disk(Disk& disk) {
  EXPECT_EQ(disk.fs.error(), "");
  auto broker = disk.start();
  EXPECT_TRUE(broker);
  if (!broker || !disk.fs.error().empty()) return std::nullopt;
  three_grants_unwritten(*broker, disk.fs);
  if (::testing::Test::HasFatalFailure()) return std::nullopt;
  return broker;
}

// A copy of the broker's binary at `binary`, for an upgrade in place to replace.
void copy_broker_to(const std::string& binary) {
  std::filesystem::copy_file(SOCKBROKERD_PATH, binary);
  ASSERT_EQ(::chmod(binary.c_str(), 0755), 0);
}

// `binary` replaced by /bin/false, then an upgrade in place: the new image
// dies at once.
void upgrade_into_a_dying_image(Broker& broker, const std::string& binary) {
  ASSERT_EQ(::unlink(binary.c_str()), 0);
  std::filesystem::copy_file("/bin/false", binary);
  ASSERT_EQ(::chmod(binary.c_str(), 0755), 0);
  ASSERT_EQ(::kill(broker.pid(), SIGUSR2), 0);
  EXPECT_EQ(broker.wait_exit(std::chrono::seconds(5)), 1) << broker.log();
}

// The next broker wrote first what the previous one could not, then stopped:
// the trail holds whole lines, these events in this order.
void expect_carried_over(Broker& next, const std::string& trail, const std::vector<std::string>& events) {
  EXPECT_TRUE(next.wait_for_log("could not write are written first")) << next.log();
  EXPECT_EQ(next.stop(), 0);
  Trail whole = read_trail(trail);
  EXPECT_TRUE(whole.broken.empty()) << whole.broken.front();
  EXPECT_EQ(sequence(whole), events);
}

// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using AuditFullFileSystem = sbtest::BrokerTest;

TEST_F(AuditFullFileSystem, GrantsStopWhileTheTrailCannotBeWrittenAndEveryLineIsWhole) {
  TempDir dir;
  SmallFileSystem fs(dir, "audit-fs", "64k");
  ASSERT_EQ(fs.error(), "");
  const std::string trail = fs.file("audit.log");
  auto broker = Broker::start(dir, web_only(), {"--audit", trail, "--audit-flush-ms", "0", "--log-level", "debug"});
  ASSERT_TRUE(broker);
  EXPECT_TRUE(sbtest::grants(*broker, "web"));
  auto ok = status_json(*broker);
  EXPECT_EQ(ok["audit"]["state"], "ok") << ok.dump();
  EXPECT_EQ(ok["audit"]["audit_failure"], "deny");

  fs.fill("filler");
  ASSERT_NO_FATAL_FAILURE(deny_root_until_failing(*broker));

  // While it fails: no grant, a system error naming the audit trail.
  auto refused = sbtest::acquire_as_nobody(*broker, "web");
  EXPECT_FALSE(refused.granted);
  EXPECT_EQ(refused.code, SOCKBROKER_E_SYSTEM) << refused.message;
  EXPECT_NE(refused.message.find("audit trail"), std::string::npos) << refused.message;
  auto cli = sbtest::cli_as_nobody(*broker, {"get", "web", "--", "/bin/true"});
  EXPECT_EQ(cli.exit_code, 71) << cli.output;
  EXPECT_NE(cli.output.find("No space left on device"), std::string::npos) << cli.output;

  auto failing = status_json(*broker);
  EXPECT_EQ(failing["audit"]["state"], "failing") << failing.dump();
  EXPECT_EQ(failing["audit"]["error"], "No space left on device");
  EXPECT_GT(failing["audit"]["failing_since"].get<std::int64_t>(), 0);
  EXPECT_EQ(failing["denials"]["audit_unavailable"], 2) << failing.dump();
  EXPECT_GE(failing["audit"]["lines_waiting"].get<std::uint64_t>(), 2u) << "at least the two refusals";
  EXPECT_EQ(failing["audit"]["kept_in_store"], false) << "no systemd here";
  auto human = sbtest::cli_as_root(*broker, {"status"});
  EXPECT_NE(human.output.find("Audit: FAILING since"), std::string::npos) << human.output;
  EXPECT_NE(human.output.find("grants are refused (audit_failure = deny)"), std::string::npos) << human.output;
  EXPECT_NE(human.output.find("line(s) waiting (a copy in " + broker->control() +
                              ".audit-unwritten: the next broker writes them)"),
            std::string::npos)
      << human.output;
  EXPECT_EQ(::kill(broker->pid(), 0), 0) << "still serving";

  // Whole lines only, even with the file system full in the middle of one.
  Trail during = read_trail(trail);
  EXPECT_TRUE(during.broken.empty()) << during.broken.front();
  EXPECT_TRUE(during.ends_with_newline);
  // The file system filled in the middle of a line (tmpfs takes what fits in
  // the file's last page): the part written was taken back.
  EXPECT_NE(broker->log().find("then refused the rest: they were taken back"), std::string::npos) << broker->log();
  EXPECT_NE(broker->log().find("cannot write the audit trail: No space left on device"), std::string::npos);

  // Room again: within the retry interval, grants resume.
  ASSERT_EQ(::unlink(fs.file("filler").c_str()), 0);
  EXPECT_TRUE(sbtest::wait_until([&] { return sbtest::acquire_as_nobody(*broker, "web").granted; },
                                 std::chrono::seconds(5), std::chrono::milliseconds(100)));
  auto after = status_json(*broker);
  EXPECT_EQ(after["audit"]["state"], "ok") << after.dump();
  EXPECT_EQ(after["audit"]["lines_lost"], 0) << "the lines kept in memory all fit";
  EXPECT_EQ(after["audit"]["lines_waiting"], 0) << after.dump();

  EXPECT_EQ(broker->stop(), 0);
  Trail whole = read_trail(trail);
  EXPECT_TRUE(whole.broken.empty()) << whole.broken.front();
  EXPECT_TRUE(whole.ends_with_newline);
  EXPECT_EQ(count(whole, "audit_resumed"), 1u);
  std::size_t refusals = 0;
  for (const auto& e : whole.events) {
    if (e.value("event", "") == "deny" && e.value("reason", "") == "audit_unavailable") ++refusals;
  }
  EXPECT_EQ(refusals, 2u) << "the refusals themselves were kept and written";
  ASSERT_FALSE(whole.events.empty());
  EXPECT_EQ(whole.events.front()["event"], "start");
  EXPECT_EQ(whole.events.back()["event"], "stop");
}

TEST_F(AuditFullFileSystem, ContinueKeepsGrantingAndWritesTheGrantsOnceItCan) {
  OnASmallDisk disk;
  auto broker = three_grants_on_a_full_disk(disk);
  ASSERT_TRUE(broker);
  auto failing = status_json(*broker);
  EXPECT_EQ(failing["audit"]["state"], "failing");
  EXPECT_EQ(failing["audit"]["audit_failure"], "continue");
  auto human = sbtest::cli_as_root(*broker, {"status"});
  EXPECT_NE(human.output.find("grants go on (audit_failure = continue)"), std::string::npos) << human.output;
  auto prometheus = sbtest::cli_as_root(*broker, {"status", "--prometheus"});
  EXPECT_NE(prometheus.output.find("sockbroker_audit_failing 1\n"), std::string::npos) << prometheus.output;

  ASSERT_EQ(::unlink(disk.fs.file("filler").c_str()), 0);
  EXPECT_TRUE(sbtest::wait_until([&] { return status_json(*broker)["audit"]["state"] == "ok"; }));
  EXPECT_EQ(broker->stop(), 0);
  Trail whole = read_trail(disk.trail);
  EXPECT_TRUE(whole.broken.empty()) << whole.broken.front();
  EXPECT_EQ(count(whole, "grant"), 3u) << "the grants made meanwhile are in the trail";
  EXPECT_EQ(count(whole, "audit_resumed"), 1u);
}

// An upgrade in place while the trail cannot be written: the lines kept in
// memory would die with the old image (the exec discards its memory). They go
// to the new image, which writes them first, in order, once there is room.
TEST_F(AuditFullFileSystem, AnUpgradeCarriesTheLinesNotYetWrittenToTheNewImage) {
  OnASmallDisk disk;
  auto broker = three_grants_on_a_full_disk(disk);
  ASSERT_TRUE(broker);

  auto upgraded = sbtest::cli_as_root(*broker, {"upgrade"});
  ASSERT_EQ(upgraded.exit_code, 0) << upgraded.output << broker->log();
  EXPECT_TRUE(broker->wait_for_log("could not write are written first")) << broker->log();
  auto failing = status_json(*broker);
  EXPECT_EQ(failing["audit"]["state"], "failing") << "the new image cannot write them either, yet";

  ASSERT_EQ(::unlink(disk.fs.file("filler").c_str()), 0);
  EXPECT_TRUE(sbtest::wait_until([&] { return status_json(*broker)["audit"]["state"] == "ok"; }));
  EXPECT_EQ(status_json(*broker)["audit"]["lines_lost"], 0);
  EXPECT_EQ(broker->stop(), 0);

  Trail whole = read_trail(disk.trail);
  EXPECT_TRUE(whole.broken.empty()) << whole.broken.front();
  EXPECT_TRUE(whole.ends_with_newline);
  EXPECT_EQ(count(whole, "grant"), 3u) << "the grants made before the upgrade are in the trail";
  EXPECT_EQ(count(whole, "upgrade"), 1u);
  EXPECT_EQ(count(whole, "start"), 2u);
  // In order: the old image's grants, its upgrade, then the new image's start.
  EXPECT_EQ(sequence(whole),
            (std::vector<std::string>{"start", "grant", "grant", "grant", "upgrade", "start", "stop"}));
}

// A third broker, after a second one wrote what the first could not: it must
// write none of it again. The trail then holds, whole and in this order, the
// first broker's start, grants and stop, and the next two's starts and stops.
template <typename Disk>
void expect_a_third_broker_writes_nothing_again(Disk& disk) {
  auto third = disk.start();
  ASSERT_TRUE(third);
  EXPECT_EQ(third->stop(), 0);
  Trail whole = read_trail(disk.trail);
  EXPECT_TRUE(whole.broken.empty()) << whole.broken.front();
  EXPECT_TRUE(whole.ends_with_newline);
  EXPECT_EQ(sequence(whole), (std::vector<std::string>{"start", "grant", "grant", "grant", "stop", "start", "stop",
                                                       "start", "stop"}));
}

// Three grants the trail cannot take, a crash (SIGKILL) once `kept_grants`
// (given the broker) counts them in the copy that outlives it, room again:
// the next broker must write them first.
template <typename Disk, typename KeptGrants>
void crash_then_the_next_broker(Disk& disk, KeptGrants kept_grants) {
  auto first = three_grants_on_a_full_disk(disk);
  ASSERT_TRUE(first);
  // The copy is rewritten in place, with no message to wait for: read it.
  ASSERT_TRUE(sbtest::wait_until([&] { return kept_grants(*first) == 3; }))
      << kept_grants(*first) << " grants in the copy";
  first->kill();

  ASSERT_EQ(::unlink(disk.fs.file("filler").c_str()), 0);
  auto second = disk.start();
  ASSERT_TRUE(second);
  expect_carried_over(*second, disk.trail, {"start", "grant", "grant", "grant", "start", "stop"});
}

// Under systemd, a restart while the trail fails loses nothing: the lines the
// stopping broker could not write wait in systemd's store, the next broker
// writes them first and takes them out of the store once written, so that a
// third broker does not write them again.
TEST_F(AuditFullFileSystem, ARestartUnderSystemdWritesTheLinesThePreviousBrokerCouldNot) {
  UnderSystemd systemd;
  auto first = three_grants_on_a_full_disk(systemd);
  ASSERT_TRUE(first);
  auto failing = status_json(*first);
  EXPECT_EQ(failing["audit"]["kept_in_store"], true) << failing.dump();
  EXPECT_GE(failing["audit"]["lines_waiting"].get<std::uint64_t>(), 3u) << failing.dump();
  auto human = sbtest::cli_as_root(*first, {"status"});
  EXPECT_NE(human.output.find("line(s) waiting (copies in systemd's store and in " + first->control() +
                              ".audit-unwritten: the next broker writes them)"),
            std::string::npos)
      << human.output;
  EXPECT_EQ(failing["audit"]["kept_in_file"], first->control() + ".audit-unwritten") << failing.dump();
  EXPECT_EQ(first->stop(), 0);
  EXPECT_NE(first->log().find("systemd's store keeps them for a restart"), std::string::npos) << first->log();
  systemd.store.drain();
  ASSERT_EQ(systemd.store.count("audit_unwritten"), 1u) << systemd.store.names();

  ASSERT_EQ(::unlink(systemd.fs.file("filler").c_str()), 0);
  auto second = systemd.start();
  ASSERT_TRUE(second);
  EXPECT_TRUE(second->wait_for_log("could not write are written first")) << second->log();
  EXPECT_EQ(status_json(*second)["audit"]["state"], "ok");
  EXPECT_TRUE(sbtest::wait_until([&] {
    systemd.store.drain(0);
    return systemd.store.count("audit_unwritten") == 0;
  })) << "written, the lines must leave the store: "
      << systemd.store.names();
  EXPECT_EQ(status_json(*second)["audit"]["kept_in_store"], false);
  EXPECT_EQ(second->stop(), 0);
  expect_a_third_broker_writes_nothing_again(systemd);
}

// A crash (here SIGKILL) while the trail fails loses at most the last
// second's lines: the store's copy is rewritten in place every second.
TEST_F(AuditFullFileSystem, ACrashUnderSystemdLosesNoLineOlderThanASecond) {
  UnderSystemd systemd;
  crash_then_the_next_broker(systemd, [&](const Broker&) {
    systemd.store.drain(0);
    const int fd = systemd.store.first("audit_unwritten");
    if (fd < 0) return std::size_t{0};
    return count(parse_trail(sbtest::read_file("/proc/self/fd/" + std::to_string(fd))), "grant");
  });
}

// Three grants the trail cannot take, then an upgrade in place into an image
// that dies at once (here /bin/false), room again, and the next broker `disk`
// starts (`rescued_by`: what its log must say of where the lines came from).
template <typename Disk>
void dying_upgrade_then_the_next_broker(Disk& disk, const char* rescued_by) {
  ASSERT_EQ(disk.fs.error(), "");
  const std::string binary = disk.dir.file("sockbrokerd");
  ASSERT_NO_FATAL_FAILURE(copy_broker_to(binary));
  auto first = disk.start(binary);
  ASSERT_TRUE(first);
  ASSERT_NO_FATAL_FAILURE(three_grants_unwritten(*first, disk.fs));
  ASSERT_NO_FATAL_FAILURE(upgrade_into_a_dying_image(*first, binary));

  ASSERT_EQ(::unlink(disk.fs.file("filler").c_str()), 0);
  auto second = disk.start();
  ASSERT_TRUE(second);
  if (rescued_by != nullptr) {
    EXPECT_TRUE(second->wait_for_log(rescued_by)) << second->log();
  }
  expect_carried_over(*second, disk.trail, {"start", "grant", "grant", "grant", "upgrade", "start", "stop"});
}

// Under systemd the lines went along in the store's memfd, so the broker
// systemd starts next writes them.
TEST_F(AuditFullFileSystem, AnUpgradeWhoseNewImageDiesLeavesTheLinesToTheNextBroker) {
  UnderSystemd systemd;
  dying_upgrade_then_the_next_broker(systemd, nullptr);
}

// Without systemd, the keeper (keeper.hpp) saves what an upgrade whose new
// image dies would lose: the ports, and the audit lines not yet written,
// which the next broker started by hand writes first.
TEST_F(AuditFullFileSystem, WithoutSystemdTheKeeperSavesTheLinesOfAnUpgradeWhoseNewImageDies) {
  OnASmallDisk disk;
  dying_upgrade_then_the_next_broker(disk, "from the keeper of an upgrade that failed");
}

// The file next to the control socket that keeps a failing trail's lines for
// the next broker (audit_spill.hpp).
std::string spill_of(const Broker& broker) { return broker.control() + ".audit-unwritten"; }

// Without systemd, a stop while the trail fails leaves the lines in the file
// next to the control socket: the next broker writes them first and empties
// the file, so that a third one writes nothing again.
TEST_F(AuditFullFileSystem, AStopWithoutSystemdLeavesTheLinesToTheNextBroker) {
  OnASmallDisk disk;
  auto first = three_grants_on_a_full_disk(disk);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->stop(), 0);
  const std::string spill = spill_of(*first);
  EXPECT_NE(first->log().find(spill + " keeps them for the next broker"), std::string::npos) << first->log();
  EXPECT_EQ(count(parse_trail(sbtest::read_file(spill)), "grant"), 3u);
  struct stat st {};
  ASSERT_EQ(::stat(spill.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);

  ASSERT_EQ(::unlink(disk.fs.file("filler").c_str()), 0);
  auto second = disk.start();
  ASSERT_TRUE(second);
  EXPECT_TRUE(second->wait_for_log("could not write are written first")) << second->log();
  EXPECT_TRUE(sbtest::wait_until([&] { return sbtest::read_file(spill).empty(); }))
      << "written, the lines must leave the file";
  EXPECT_EQ(second->stop(), 0);
  expect_a_third_broker_writes_nothing_again(disk);
}

// Without systemd, a crash (here SIGKILL) while the trail fails loses at most
// the last second's lines: the file is rewritten in place every second.
TEST_F(AuditFullFileSystem, ACrashWithoutSystemdLosesNoLineOlderThanASecond) {
  OnASmallDisk disk;
  crash_then_the_next_broker(
      disk, [](const Broker& first) { return count(parse_trail(sbtest::read_file(spill_of(first))), "grant"); });
}

// A stop while the trail fails, where nothing keeps the lines for a next
// broker (here someone planted a symbolic link where the file would be: the
// broker does not follow it, nor write through it): the log, a channel of its
// own, gets them as a last resort, whole, so that an operator can recover them.
TEST_F(AuditFullFileSystem, AStopThatCannotKeepTheLinesLeavesThemInTheLog) {
  OnASmallDisk disk;
  ASSERT_EQ(disk.fs.error(), "");
  disk.dir.write("not-the-broker's", "untouched\n");
  const std::string target = disk.dir.file("not-the-broker's");
  ASSERT_EQ(::symlink(target.c_str(), disk.dir.file("control.sock.audit-unwritten").c_str()), 0);
  auto broker = disk.start();
  ASSERT_TRUE(broker);
  ASSERT_EQ(spill_of(*broker), disk.dir.file("control.sock.audit-unwritten"));
  ASSERT_NO_FATAL_FAILURE(three_grants_unwritten(*broker, disk.fs));
  EXPECT_EQ(broker->stop(), 0);
  EXPECT_EQ(sbtest::read_file(target), "untouched\n");

  const std::string log = broker->log();
  EXPECT_NE(log.find("will not outlive this broker"), std::string::npos) << log;
  EXPECT_NE(log.find("they follow in the log, the last place left to keep them"), std::string::npos) << log;
  std::vector<std::string> logged;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    const std::size_t at = line.find("unwritten audit line: ");
    if (at == std::string::npos) continue;
    auto event = nlohmann::json::parse(line.substr(at + 22), nullptr, false);
    ASSERT_TRUE(event.is_object()) << "not a whole audit line: " << line;
    logged.push_back(event.value("event", ""));
  }
  EXPECT_EQ(std::count(logged.begin(), logged.end(), "grant"), 3) << log;
  EXPECT_EQ(std::count(logged.begin(), logged.end(), "stop"), 1) << log;
  EXPECT_EQ(count(read_trail(disk.trail), "grant"), 0u) << "the trail never took them";
}

}  // namespace
