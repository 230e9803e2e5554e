// The broker's audit writer: the fast path (AuditLine, no JSON tree) must write
// exactly the bytes nlohmann::json writes for the same fields, whatever the
// strings hold, since scripts and `sockbroker audit` parse these lines.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "audit.hpp"

namespace sockbroker::broker {
namespace {

using nlohmann::ordered_json;

// Strings nlohmann escapes in every way it can: quotes, backslashes, control
// characters, DEL, multi-byte UTF-8 and bytes that are not UTF-8 at all.
const std::vector<std::string> kAwkward = {
    "",
    "plain.service",
    "quote\" and back\\slash",
    std::string("ctl\x01\x1f\t\n\r\b\f", 10),
    "del\x7f",
    "utf8 \xc3\xa9 \xe2\x9c\x93",
    "broken \xff\xfe \xc3",
};

class AuditFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/sockbroker-audit-test.XXXXXX";
    ASSERT_NE(::mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    path_ = dir_ + "/audit.log";
  }
  void TearDown() override {
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }

  // The file as the broker writes it, opened here: Audit::open would refuse a
  // directory that is not root's, and these tests are about the bytes, for
  // anyone to run (the integration tests open real destinations as root).
  Audit open_audit() const {
    UniqueFd file(::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    EXPECT_TRUE(file) << path_ << ": " << std::strerror(errno);
    return Audit::adopt(std::move(file));
  }

  std::vector<std::string> lines() const {
    std::ifstream in(path_);
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }

  std::string dir_;
  std::string path_;
};

// What the broker wrote before the fast path: {"ts","event"} updated with the fields.
std::string reference(const std::string& ts, std::string_view event, const ordered_json& fields) {
  ordered_json line;
  line["ts"] = ts;
  line["event"] = event;
  line.update(fields);
  return line.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

std::string ts_of(const std::string& line) { return ordered_json::parse(line).at("ts").get<std::string>(); }

policy::SocketSpec spec_of(std::string name, std::string_view listen) {
  policy::SocketSpec spec;
  spec.name = std::move(name);
  auto address = policy::parse_address(listen);
  EXPECT_TRUE(address.ok()) << listen;
  if (address.ok()) spec.listen = *address;
  return spec;
}

TEST_F(AuditFile, FastPathWritesTheSameBytesAsTheJsonTree) {
  auto audit = open_audit();

  std::vector<std::string> expected;
  for (const char* listen : {"127.0.0.1:80", "[::1]:8443", "/run/a\"b\\c.sock", "@abstract"}) {
    for (const auto& text : kAwkward) {
      policy::SocketSpec spec = spec_of("web", listen);
      spec.reuse_port = text.size() % 2 == 0;
      policy::PeerIdentity peer;
      peer.pid = 4242;
      peer.uid = 65534;
      peer.gid = 65534;
      if (!text.empty()) peer.unit = text;
      peer.executable = "/usr/bin/" + text;

      AuditLine line = audit.begin("grant");
      line.socket(spec).field("rule", 3).field("none", nullptr).peer(peer);
      line.field("netns", std::uint64_t{4026531840}).field("negative", std::int64_t{-7}).field("flag", true);
      line.field("text", text).field("list", ordered_json::array({text, 1}));
      audit.commit(line);

      auto fields = socket_json(spec);
      fields["rule"] = 3;
      fields["none"] = nullptr;
      fields["peer"] = peer_json(peer);
      fields["netns"] = std::uint64_t{4026531840};
      fields["negative"] = -7;
      fields["flag"] = true;
      fields["text"] = text;
      fields["list"] = ordered_json::array({text, 1});
      expected.push_back(reference("", "grant", fields));

      // The general path, which every other event takes.
      audit.emit("deny", fields);
      expected.push_back(reference("", "deny", fields));
    }
  }

  auto written = lines();
  ASSERT_EQ(written.size(), expected.size());
  for (std::size_t i = 0; i < written.size(); ++i) {
    const std::string ts = ts_of(written[i]);
    // "2026-11-22T10:00:00.123456Z"
    ASSERT_EQ(ts.size(), 27u) << ts;
    EXPECT_EQ(ts[10], 'T');
    EXPECT_EQ(ts[19], '.');
    EXPECT_EQ(ts.back(), 'Z');
    auto want = ordered_json::parse(expected[i]);
    want["ts"] = ts;
    EXPECT_EQ(written[i], want.dump(-1, ' ', false, ordered_json::error_handler_t::replace)) << "line " << i;
  }
}

// A session keeps its peer's text from its first grant: the lines it makes
// from that memo are the bytes the peer itself would make, line after line.
TEST_F(AuditFile, PeerMemoWritesWhatThePeerWrites) {
  auto audit = open_audit();
  std::size_t peers = 0;
  for (const auto& text : kAwkward) {
    policy::PeerIdentity peer;
    peer.pid = 4242;
    peer.uid = 65534;
    peer.gid = 65534;
    if (!text.empty()) peer.unit = text;
    if (text.size() % 2 == 0) peer.executable = "/usr/bin/" + text;
    std::string memo;
    for (int i = 0; i < 3; ++i) {
      AuditLine line = audit.begin("grant");
      if (i == 0) {
        line.peer(peer);
      } else {
        line.peer(peer, memo);
      }
      line.field("after", 1);
      audit.commit(line);
    }
    ++peers;
  }
  auto written = lines();
  ASSERT_EQ(written.size(), 3 * peers);
  for (std::size_t i = 0; i < written.size(); i += 3) {
    // Past "ts", the only field that may differ.
    auto tail = [&](std::size_t n) { return written[n].substr(written[n].find("\"event\"")); };
    EXPECT_EQ(tail(i + 1), tail(i)) << "line " << i + 1;
    EXPECT_EQ(tail(i + 2), tail(i)) << "line " << i + 2;
  }
}

TEST_F(AuditFile, SocketFieldsFollowAChangedSpec) {
  auto audit = open_audit();
  // The same object, changed in place between two events (as a reload may
  // leave a new spec at an old address): the second line shows the change.
  policy::SocketSpec spec = spec_of("web", "127.0.0.1:80");
  AuditLine first = audit.begin("grant");
  first.socket(spec);
  audit.commit(first);
  spec = spec_of("web", "127.0.0.1:81");
  spec.reuse_port = true;
  AuditLine second = audit.begin("grant");
  second.socket(spec);
  audit.commit(second);

  auto written = lines();
  ASSERT_EQ(written.size(), 2u);
  auto json = ordered_json::parse(written[1]);
  EXPECT_EQ(json["local_addr"]["sin_port"], 81);
  EXPECT_EQ(json["reuse_port"], true);
}

TEST(Audit, UnwritableDestinationIsAnError) {
  auto audit = Audit::open("/proc/sockbroker-no-such-dir/audit.log");
  ASSERT_FALSE(audit.ok());
  EXPECT_NE(audit.error().message.find("cannot open audit destination"), std::string::npos) << audit.error().message;
}

}  // namespace
}  // namespace sockbroker::broker
