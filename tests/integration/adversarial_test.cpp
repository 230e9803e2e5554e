// Hostile local clients against the real sockbrokerd (DESIGN.md, "Threat
// model"): malformed, oversized and hand-built Cap'n Proto datagrams,
// descriptor floods, connection floods, clients that idle, never read, exit
// mid-request or hand their connection to another uid, address squatters and
// reload storms.
//
// Every case ends with expect_still_serving(): the broker must still grant to
// a well-behaved client (a nobody child that then exits, so that its lease
// ends with it) and hold exactly the descriptors it held before the attack.
// The test process itself never acquires a socket the policy serves: a live
// test process is a lease holder whose pidfd the broker rightly keeps.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <sockbroker/client.hpp>

#include "codec.hpp"
#include "datagram.hpp"
#include "harness.hpp"

// Older kernel and libc headers than the kernel (DESIGN.md, machine notes).
#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif
#ifndef SO_ATTACH_REUSEPORT_EBPF
#define SO_ATTACH_REUSEPORT_EBPF 52
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

namespace {

namespace proto = sockbroker::proto;
namespace fs = std::filesystem;
using sbtest::Broker;
using sbtest::TempDir;
using sockbroker::UniqueFd;
using Bytes = std::vector<std::byte>;
using Clock = std::chrono::steady_clock;

// Hand-made words are written as host integers; the wire is little-endian.
static_assert(std::endian::native == std::endian::little);

// A second unprivileged uid ("daemon" on Debian), for "another tenant".
constexpr uid_t kDaemon = 1;
constexpr gid_t kDaemonGroup = 1;

// The well-behaved client's socket, in every policy. Its port is above 20000
// (nothing else on the host uses it) and outside 20000..20299, which the
// pagination case fills.
constexpr std::uint16_t kWebPort = 21080;
const char* const kWebSocket = R"(
[socket.web]
listen = "127.0.0.1:21080"
[[socket.web.allow]]
user = "nobody"
[[socket.web.allow]]
user = "daemon"
)";

std::string policy(const std::string& broker_settings = "", const std::string& more_sockets = "") {
  return "[broker]\ncontrol_mode = \"0666\"\n" + broker_settings + "\n" + kWebSocket + more_sockets;
}

// ---------------------------------------------------------------------------
// Processes

// 'R', 'S', 'T' (stopped), 'Z' ... from /proc/PID/stat; '?' if it is gone.
char process_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size() ? '?' : stat[close + 2];
}

// The two promises every case ends with.
void expect_still_serving(const Broker& broker, int baseline) {
  char state = process_state(broker.pid());
  EXPECT_TRUE(state != 'Z' && state != '?') << "sockbrokerd died:\n" << broker.log();
  EXPECT_TRUE(sbtest::grants(broker, "web")) << "a well-behaved client was not served";
  EXPECT_EQ(broker.wait_for_fd_count(baseline), baseline) << broker.fd_listing();
}

using sbtest::await;
using sbtest::Child;
using sbtest::notify;
using sbtest::Pipe;

// SIGSTOP on the broker, so that what clients do meanwhile happens before it
// accepts or reads anything; SIGCONT when resumed or destroyed (declare it after
// the Broker: a stopped broker would not see the SIGTERM that ends it).
class PausedBroker {
 public:
  explicit PausedBroker(const Broker& broker) : pid_(broker.pid()) {
    ::kill(pid_, SIGSTOP);
    for (int i = 0; i < 2000 && process_state(pid_) != 'T'; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  PausedBroker(const PausedBroker&) = delete;
  PausedBroker& operator=(const PausedBroker&) = delete;
  ~PausedBroker() { resume(); }
  void resume() {
    if (pid_ > 0) ::kill(std::exchange(pid_, -1), SIGCONT);
  }

 private:
  pid_t pid_;
};

// ---------------------------------------------------------------------------
// The control socket, byte by byte

using sbtest::connect_control;

// One datagram with `fds` attached (SCM_RIGHTS). Returns 0 or the errno.
int send_raw(int sock, std::span<const std::byte> bytes, const std::vector<int>& fds = {}, int flags = 0) {
  iovec iov{const_cast<std::byte*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<cmsghdr> control;  // cmsghdr elements keep the buffer aligned
  if (!fds.empty()) {
    std::size_t space = CMSG_SPACE(sizeof(int) * fds.size());
    control.resize((space + sizeof(cmsghdr) - 1) / sizeof(cmsghdr));
    msg.msg_control = control.data();
    msg.msg_controllen = space;
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL | flags);
  if (n < 0) return errno;
  return static_cast<std::size_t>(n) == bytes.size() ? 0 : EMSGSIZE;
}

struct Incoming {
  ssize_t size = -1;  // 0: end of stream (the broker never sends an empty datagram)
  int error = 0;      // when size < 0: the errno, or ETIMEDOUT when nothing came
  Bytes bytes;
  std::vector<UniqueFd> fds;  // descriptors that came along
};

Incoming receive(int sock, int timeout_ms = 5000) {
  Incoming in;
  pollfd p{sock, POLLIN, 0};
  int ready = ::poll(&p, 1, timeout_ms);
  if (ready <= 0) {
    in.error = ready == 0 ? ETIMEDOUT : errno;
    return in;
  }
  in.bytes.resize(proto::kMaxDatagram);
  iovec iov{in.bytes.data(), in.bytes.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = ::recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0) {
    in.error = errno;
    in.bytes.clear();
    return in;
  }
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    for (std::size_t i = 0; i < (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof fd);
      in.fds.emplace_back(fd);
    }
  }
  in.size = n;
  in.bytes.resize(static_cast<std::size_t>(n));
  return in;
}

std::optional<proto::Reply> reply_of(const Incoming& in) {
  if (in.size <= 0) return std::nullopt;
  auto reply = proto::decode_reply(in.bytes);
  if (!reply) return std::nullopt;
  return *reply;
}

std::string describe(const Incoming& in) {
  if (in.size < 0) return std::string("error: ") + std::strerror(in.error);
  if (in.size == 0) return "end of stream";
  auto reply = proto::decode_reply(in.bytes);
  if (!reply) return "undecodable reply: " + reply.error().message;
  if (const auto* g = std::get_if<proto::Grant>(&*reply)) return "grant of \"" + g->name + "\"";
  if (const auto* f = std::get_if<proto::Failure>(&*reply)) {
    return std::string("failure ") + proto::to_string(f->code) + ": " + f->message;
  }
  if (const auto* l = std::get_if<proto::Listing>(&*reply)) {
    return "listing of " + std::to_string(l->entries.size()) + " entries, next " + std::to_string(l->next_cursor);
  }
  return "outcome: " + std::get<proto::Outcome>(*reply).message;
}

testing::AssertionResult is_failure(const Incoming& in, proto::ErrorCode code, std::string_view needle) {
  auto reply = reply_of(in);
  const auto* failure = reply ? std::get_if<proto::Failure>(&*reply) : nullptr;
  if (failure == nullptr || failure->code != code || failure->message.find(needle) == std::string::npos) {
    return testing::AssertionFailure() << "expected a " << proto::to_string(code) << " failure mentioning \"" << needle
                                       << "\", got " << describe(in);
  }
  return testing::AssertionSuccess();
}

bool is_grant(const Incoming& in) {
  auto reply = reply_of(in);
  return reply && std::holds_alternative<proto::Grant>(*reply) && in.fds.size() == 1;
}

// How the broker answers what it cannot accept: one protocol failure naming
// the problem, then it hangs up.
testing::AssertionResult rejected_then_hung_up(int sock, std::string_view needle) {
  Incoming first = receive(sock);
  if (auto verdict = is_failure(first, proto::ErrorCode::protocol, needle); !verdict) return verdict;
  Incoming second = receive(sock);
  if (second.size != 0) {
    return testing::AssertionFailure() << "expected the broker to hang up after the failure, got " << describe(second);
  }
  return testing::AssertionSuccess();
}

// One datagram on a fresh connection, and the broker's answer to it.
testing::AssertionResult rejected_on_fresh_connection(const Broker& broker, std::span<const std::byte> bytes,
                                                      std::string_view needle, const std::vector<int>& fds = {}) {
  UniqueFd conn = connect_control(broker.control());
  if (!conn) return testing::AssertionFailure() << "cannot connect: " << std::strerror(errno);
  if (int err = send_raw(conn.get(), bytes, fds); err != 0) {
    return testing::AssertionFailure() << "cannot send " << bytes.size() << " bytes: " << std::strerror(err);
  }
  return rejected_then_hung_up(conn.get(), needle);
}

Bytes encode(const proto::Request& request) {
  proto::DatagramBuffer buffer;
  auto size = proto::encode_request(request, buffer.span());
  if (!size) {
    ADD_FAILURE() << size.error().message;
    return {};
  }
  return Bytes(buffer.bytes, buffer.bytes + *size);
}

Bytes acquire_request(const std::string& name) { return encode(proto::Request{proto::AcquireRequest{name, 0, false}}); }
Bytes list_request(std::uint32_t cursor) { return encode(proto::Request{proto::ListRequest{cursor}}); }

// One administrator's page of the listing (the test process is root).
std::optional<proto::Listing> list_page(int sock, std::uint32_t cursor, std::size_t* wire_size = nullptr) {
  if (send_raw(sock, list_request(cursor)) != 0) return std::nullopt;
  Incoming in = receive(sock);
  if (wire_size != nullptr) *wire_size = in.bytes.size();
  auto reply = reply_of(in);
  if (!reply || !std::holds_alternative<proto::Listing>(*reply)) {
    ADD_FAILURE() << "list with cursor " << cursor << ": " << describe(in);
    return std::nullopt;
  }
  return std::get<proto::Listing>(std::move(*reply));
}

// Whether the broker answers a list request on a fresh connection in time.
bool answers_within(const Broker& broker, int timeout_ms) {
  UniqueFd conn = connect_control(broker.control());
  if (!conn || send_raw(conn.get(), list_request(0)) != 0) return false;
  auto reply = reply_of(receive(conn.get(), timeout_ms));
  return reply && std::holds_alternative<proto::Listing>(*reply);
}

// The descriptors the broker holds at rest, the count every case returns to.
// Broker::start returns once the control socket accepts, which may be before
// the loop has made its epoll, signalfd and spare descriptors: an answered
// request shows it runs. Then no session may be open (each holds a pidfd, as
// does each lease holder, and there are none yet), and the count must hold
// still for a while.
int baseline_of(const Broker& broker) {
  EXPECT_TRUE(answers_within(broker, 10000)) << "the broker does not answer";
  int count = -1;
  int still = 0;
  for (int i = 0; i < 500 && still < 10; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::string listing = broker.fd_listing();
    int now = listing.find("[pidfd]") == std::string::npos ? broker.fd_count() : -1;
    still = now >= 0 && now == count ? still + 1 : 0;
    count = now;
  }
  EXPECT_GE(still, 10) << "the broker's descriptors do not settle:\n" << broker.fd_listing();
  return count;
}

// The administrator's view of one entry (holders, grants_total), or nullopt.
std::optional<proto::SocketEntry> admin_entry(const Broker& broker, const std::string& name) {
  UniqueFd conn = connect_control(broker.control());
  for (std::uint32_t cursor = 0;;) {
    auto page = list_page(conn.get(), cursor);
    if (!page) return std::nullopt;
    for (auto& entry : page->entries) {
      if (entry.name == name) return entry;
    }
    if (page->next_cursor == 0) return std::nullopt;
    cursor = page->next_cursor;
  }
}

// Waits (up to 3 s) until `name` has `holders` live grants; returns the last count.
std::uint32_t wait_for_holders(const Broker& broker, const std::string& name, std::uint32_t holders) {
  std::uint32_t now = ~0U;
  for (int i = 0; i < 300; ++i) {
    auto entry = admin_entry(broker, name);
    now = entry ? entry->holders : ~0U;
    if (now == holders) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return now;
}

// A descriptor passed over a socketpair (the one-byte payload is ignored).
UniqueFd receive_fd(int sock, int timeout_ms = 10000) {
  Incoming in = receive(sock, timeout_ms);
  if (in.fds.size() != 1) return UniqueFd();
  return std::move(in.fds[0]);
}

// A pipe's write end whose last reader is gone reports POLLERR; its read end
// whose last writer is gone reports POLLHUP. Either tells that every copy of
// the other end, the broker's included, has been closed.
bool other_end_closed(int fd, short event, int timeout_ms) {
  pollfd p{fd, static_cast<short>(event == POLLERR ? POLLOUT : POLLIN), 0};
  auto until = Clock::now() + std::chrono::milliseconds(timeout_ms);
  do {
    p.revents = 0;
    if (::poll(&p, 1, 10) == 1 && (p.revents & event) != 0) return true;
  } while (Clock::now() < until);
  return false;
}

// ---------------------------------------------------------------------------
// Hand-made Cap'n Proto (the encoder rightly refuses to produce any of this).
//
// Layouts from proto/sockbroker.capnp:
//   Request  data: version (bits 0-15), union discriminant (16-31); 1 pointer (the body)
//            discriminants: acquire 0, listSockets 1, reload 2, revoke 3
//   Acquire  data: flags (0-31), withNetns (32); pointer: name

constexpr unsigned kByteElements = 2;
constexpr unsigned kPointerElements = 6;

std::uint64_t struct_pointer(std::size_t at, std::size_t target, std::uint16_t data_words, std::uint16_t pointers) {
  auto offset = static_cast<std::uint32_t>(static_cast<std::int64_t>(target) - static_cast<std::int64_t>(at) - 1);
  return std::uint64_t{offset << 2} | std::uint64_t{data_words} << 32 | std::uint64_t{pointers} << 48;
}

std::uint64_t list_pointer(std::size_t at, std::size_t target, unsigned element_size, std::uint32_t count) {
  auto offset = static_cast<std::uint32_t>(static_cast<std::int64_t>(target) - static_cast<std::int64_t>(at) - 1);
  return std::uint64_t{(offset << 2) | 1} | std::uint64_t{element_size} << 32 | std::uint64_t{count} << 35;
}

std::uint64_t header_word(std::uint16_t version, std::uint16_t kind) {
  return std::uint64_t{version} | std::uint64_t{kind} << 16;
}

// One segment, word by word; message() puts the segment table in front.
class Segment {
 public:
  std::size_t add(std::uint64_t word) {
    words_.push_back(word);
    return words_.size() - 1;
  }
  void set(std::size_t at, std::uint64_t word) { words_.at(at) = word; }
  [[nodiscard]] std::size_t size() const { return words_.size(); }

  // A Text at pointer slot `at`: the bytes plus the NUL Cap'n Proto requires.
  void add_text(std::size_t at, std::string_view text, bool nul = true) {
    std::string stored(text);
    if (nul) stored.push_back('\0');
    std::size_t first = words_.size();
    words_.resize(first + (stored.size() + 7) / 8, 0);
    std::memcpy(words_.data() + first, stored.data(), stored.size());
    set(at, list_pointer(at, first, kByteElements, static_cast<std::uint32_t>(stored.size())));
  }

  [[nodiscard]] Bytes message() const {
    return with_table({0, static_cast<std::uint32_t>(words_.size())});
  }

  // The words after an arbitrary segment table (count - 1, sizes..., padding).
  [[nodiscard]] Bytes with_table(std::vector<std::uint32_t> table) const {
    if (table.size() % 2 != 0) table.push_back(0);
    Bytes out(table.size() * 4 + words_.size() * 8);
    std::memcpy(out.data(), table.data(), table.size() * 4);
    std::memcpy(out.data() + table.size() * 4, words_.data(), words_.size() * 8);
    return out;
  }

 private:
  std::vector<std::uint64_t> words_;
};

// An acquire request as the encoder would write it, but with any name,
// version and discriminant.
Segment acquire_segment(std::string_view name, bool nul = true, std::uint16_t version = proto::kProtocolVersion,
                        std::uint16_t kind = 0) {
  Segment s;
  s.add(struct_pointer(0, 1, 1, 1));  // 0: root -> Request
  s.add(header_word(version, kind));  // 1: Request data
  s.add(struct_pointer(2, 3, 1, 1));  // 2: Request.acquire -> 3
  s.add(0);                           // 3: Acquire data: flags 0, withNetns false
  s.add(0);                           // 4: Acquire.name
  s.add_text(4, name, nul);
  return s;
}

Bytes acquire_message(std::string_view name, bool nul = true, std::uint16_t version = proto::kProtocolVersion,
                      std::uint16_t kind = 0) {
  return acquire_segment(name, nul, version, kind).message();
}

// ---------------------------------------------------------------------------
// Datagram sizes

// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using Adversarial = sbtest::BrokerTest;

TEST_F(Adversarial, EmptyDatagramIsABadRequest) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  // On SOCK_SEQPACKET a zero-byte read is also how end of stream looks: the
  // broker must tell them apart, answer this one, and hang up.
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, {}, "empty datagram"));
  auto bad = broker->wait_for_events("bad_request");
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_EQ(bad[0]["peer"]["uid"], 0);
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, Exactly4KiBOfGarbageIsRejected) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  std::mt19937 random(4096);
  Bytes garbage(proto::kMaxDatagram);
  for (auto& b : garbage) b = static_cast<std::byte>(random());
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, garbage, "segment"));
  // Garbage that passes the segment-count check: one segment of random size.
  std::memset(garbage.data(), 0, 4);
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, garbage, "malformed message"));
  Bytes ones(proto::kMaxDatagram, std::byte{0xff});
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, ones, "segment"));
  Bytes zeros(proto::kMaxDatagram, std::byte{0});
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, zeros, "trailing bytes"));
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, ValidMessagePaddedTo4KiBIsRejectedForTrailingBytes) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Bytes padded = acquire_request("nosuch");
  ASSERT_LT(padded.size(), proto::kMaxDatagram);
  padded.resize(proto::kMaxDatagram, std::byte{0});
  // The segment table says where the message ends; what follows is not ignored.
  EXPECT_EQ(proto::decode_request(padded).error().message, "trailing bytes after the message");
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, padded, "trailing bytes after the message"));
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, ValidMessageWhoseSegmentFillsExactly4KiBIsServed) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  // The padding inside the segment: a valid message of exactly the limit.
  Segment s = acquire_segment("nosuch");
  while (8 + (s.size() + 1) * 8 <= proto::kMaxDatagram) s.add(0);
  Bytes full = s.message();
  ASSERT_EQ(full.size(), proto::kMaxDatagram);
  ASSERT_TRUE(proto::decode_request(full).ok());
  UniqueFd conn = connect_control(broker->control());
  ASSERT_EQ(send_raw(conn.get(), full), 0);
  // Decoded: an ordinary answer (no such socket), and the connection stays open.
  EXPECT_TRUE(is_failure(receive(conn.get()), proto::ErrorCode::unknown_socket, "nosuch"));
  ASSERT_EQ(send_raw(conn.get(), full), 0);
  EXPECT_TRUE(is_failure(receive(conn.get()), proto::ErrorCode::unknown_socket, "nosuch"));
  conn.reset();
  EXPECT_TRUE(broker->wait_for_events("bad_request", 0).empty());
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, FourKiBPlusOneIsTruncatedAndRejected) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Segment s = acquire_segment("nosuch");
  while (8 + s.size() * 8 < proto::kMaxDatagram) s.add(0);
  Bytes one_more = s.message();
  one_more.push_back(std::byte{0});
  ASSERT_EQ(one_more.size(), proto::kMaxDatagram + 1);
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, one_more, "larger than 4096 bytes"));
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, SixtyFourKiBIsRejectedOrRefusedToTheSender) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Bytes big(64 * 1024, std::byte{0x5a});
  UniqueFd conn = connect_control(broker->control());
  int err = send_raw(conn.get(), big);
  if (err == 0) {
    EXPECT_TRUE(rejected_then_hung_up(conn.get(), "larger than 4096 bytes"));
  } else {
    // Larger than the sender's socket buffer: the attacker's own send fails.
    EXPECT_EQ(err, EMSGSIZE) << std::strerror(err);
  }
  conn.reset();
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, UnalignedPayloadIsRejected) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Bytes valid = acquire_request("nosuch");
  Bytes shifted{std::byte{0}};
  shifted.insert(shifted.end(), valid.begin(), valid.end());
  ASSERT_NE(shifted.size() % 8, 0u);
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, shifted, "not whole 8-byte words"));
  // Shifted and cut back to whole words: the segment table is now garbage.
  shifted.resize(valid.size());
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, shifted, ""));
  expect_still_serving(*broker, baseline);
}

// ---------------------------------------------------------------------------
// Hostile segment tables

TEST_F(Adversarial, HugeSegmentCountIsRejected) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Segment s = acquire_segment("nosuch");
  // 0xffffffff is "count - 1": Cap'n Proto 0.9 would wrap it to one segment.
  for (std::uint32_t count_minus_one : {0xffffffffU, 0x7fffffffU, 511U}) {
    EXPECT_TRUE(rejected_on_fresh_connection(*broker, s.with_table({count_minus_one, static_cast<std::uint32_t>(s.size())}),
                                             "more than one segment"))
        << count_minus_one;
  }
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, SegmentSizeBeyondTheDatagramIsRejected) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Segment s = acquire_segment("nosuch");
  for (std::uint32_t words : {static_cast<std::uint32_t>(s.size() + 1), 512U, 0x1fffffffU, 0xffffffffU}) {
    EXPECT_TRUE(rejected_on_fresh_connection(*broker, s.with_table({0, words}), "malformed message")) << words;
  }
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, MoreThanOneSegmentIsRejected) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Segment s = acquire_segment("nosuch");
  s.add(0);  // a second segment of one word, made of the last word
  auto first = static_cast<std::uint32_t>(s.size() - 1);
  Bytes two = s.with_table({1, first, 1});
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, two, "more than one segment"));
  expect_still_serving(*broker, baseline);
}

// ---------------------------------------------------------------------------
// Depth and amplification

// A Request whose body is a chain of `depth` structs, each only a pointer to
// the next: one word per level.
Bytes nested_request(int depth) {
  Segment s;
  s.add(struct_pointer(0, 1, 1, 1));
  s.add(header_word(proto::kProtocolVersion, 0));
  std::size_t slot = s.add(0);
  for (int i = 0; i < depth; ++i) {
    std::size_t level = s.add(0);
    s.set(slot, struct_pointer(slot, level, 0, 1));
    slot = level;
  }
  return s.message();
}

TEST_F(Adversarial, NestingDepth1000CannotFitAndIsRejectedBySize) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Bytes deep = nested_request(1000);
  // Every level costs at least one word: 1000 of them are nearly twice the limit.
  ASSERT_GT(deep.size(), proto::kMaxDatagram + 3000);
  EXPECT_NE(proto::decode_request(deep).error().message.find("exceeds the 4096-byte limit"), std::string::npos);
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, deep, "larger than 4096 bytes"));
  // The deepest chain that fits is not followed: the decoder reads the one
  // path the schema names and finds a struct where the name's text should be.
  Bytes fits = nested_request(500);
  ASSERT_LE(fits.size(), proto::kMaxDatagram);
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, fits, "malformed message"));
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, PointerAmplificationStopsAtTheTraversalLimit) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);

  // What a request can amplify: Request has one body pointer, Acquire one
  // Text. So make the root struct as large as a datagram allows (501 words)
  // and point its body back at itself: reading the root and then the body
  // reads 1002 words from a 503-word message, past the 512-word limit.
  constexpr std::uint16_t kPointers = 500;
  Segment loop;
  loop.add(struct_pointer(0, 1, 1, kPointers));
  loop.add(header_word(proto::kProtocolVersion, 0));
  std::size_t body = loop.add(0);
  for (int i = 1; i < kPointers; ++i) loop.add(0);
  loop.set(body, struct_pointer(body, 1, 1, kPointers));
  Bytes amplified = loop.message();
  ASSERT_LE(amplified.size(), proto::kMaxDatagram);
  EXPECT_NE(proto::decode_request(amplified).error().message.find("traversal limit"), std::string::npos);
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, amplified, "traversal limit"));

  // A list of 400 pointers to one struct, hung on a pointer field this
  // version does not know: never traversed, so it costs nothing, and the
  // request is answered as what it is (an acquire of "nosuch").
  Segment fan;
  fan.add(struct_pointer(0, 1, 1, 1));
  fan.add(header_word(proto::kProtocolVersion, 0));
  fan.add(struct_pointer(2, 3, 1, 2));  // Acquire with a second, unknown pointer
  fan.add(0);
  fan.add(0);  // 4: name
  fan.add(0);  // 5: unknown
  fan.add_text(4, "nosuch");
  std::size_t target = fan.add(0);
  std::size_t list = fan.size();
  for (int i = 0; i < 400; ++i) fan.add(struct_pointer(list + static_cast<std::size_t>(i), target, 1, 0));
  fan.set(5, list_pointer(5, list, kPointerElements, 400));
  Bytes fanned = fan.message();
  ASSERT_LE(fanned.size(), proto::kMaxDatagram);
  UniqueFd conn = connect_control(broker->control());
  ASSERT_EQ(send_raw(conn.get(), fanned), 0);
  EXPECT_TRUE(is_failure(receive(conn.get()), proto::ErrorCode::unknown_socket, "nosuch"));
  conn.reset();
  expect_still_serving(*broker, baseline);
}

// ---------------------------------------------------------------------------
// Versions, kinds and names

TEST_F(Adversarial, WrongProtocolVersionIsRejectedNamingBoth) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  // "web" is a socket root would be granted: a version slip must not grant it.
  for (std::uint16_t version : {0, 2, 0xffff}) {
    EXPECT_TRUE(rejected_on_fresh_connection(*broker, acquire_message("web", true, version),
                                             "protocol version " + std::to_string(version) + ", expected 1"));
  }
  EXPECT_TRUE(broker->wait_for_events("grant", 0).empty());
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, UnknownRequestKindIsRejected) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  for (std::uint16_t kind : {8, 9, 0xffff}) {  // 4 is status, 5 acquireAddress, 6 watch, 7 upgrade
    EXPECT_TRUE(rejected_on_fresh_connection(*broker, acquire_message("web", true, proto::kProtocolVersion, kind),
                                             "unknown request kind " + std::to_string(kind)));
  }
  EXPECT_TRUE(broker->wait_for_events("grant", 0).empty());
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, SocketNameOf129CharactersIsRejected) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  // The encoder refuses it; a hostile client does not use the encoder.
  EXPECT_FALSE(proto::encode_request(proto::Request{proto::AcquireRequest{std::string(129, 'a'), 0, false}},
                                     proto::DatagramBuffer{}.span())
                   .ok());
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, acquire_message(std::string(129, 'a')), "longer than 128 bytes"));
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, acquire_message(std::string(4000, 'a')), "longer than 128 bytes"));
  // 128 is the limit itself: a well-formed request for a socket that does not exist.
  UniqueFd conn = connect_control(broker->control());
  ASSERT_EQ(send_raw(conn.get(), acquire_message(std::string(128, 'a'))), 0);
  EXPECT_TRUE(is_failure(receive(conn.get()), proto::ErrorCode::unknown_socket, std::string(128, 'a')));
  conn.reset();
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, NamesWithNulSlashColonOrNoTerminatorAreRejected) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  using namespace std::string_literals;
  // "web\0evil" read as a C string is "web", which root would be granted.
  for (const std::string& name : {"web\0evil"s, "\0web"s, "a/b"s, "../web"s, "a:b"s, "web:web"s, "web\n"s, " web"s}) {
    EXPECT_TRUE(rejected_on_fresh_connection(*broker, acquire_message(name), "characters outside"))
        << testing::PrintToString(name);
  }
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, acquire_message("web", false), "malformed message"));
  // Revoke, for administrators (root here), checks its name the same way.
  for (const std::string& name : {"web\0x"s, "a/b"s, "a:b"s}) {
    Segment s;
    s.add(struct_pointer(0, 1, 1, 1));
    s.add(header_word(proto::kProtocolVersion, 3));
    s.add(struct_pointer(2, 3, 0, 1));
    s.add(0);
    s.add_text(3, name);
    EXPECT_TRUE(rejected_on_fresh_connection(*broker, s.message(), "is not a socket name"))
        << testing::PrintToString(name);
  }
  EXPECT_TRUE(broker->wait_for_events("grant", 0).empty());
  EXPECT_TRUE(broker->wait_for_events("revoke", 0).empty());
  expect_still_serving(*broker, baseline);
}

// ---------------------------------------------------------------------------
// Descriptors sent to the broker

// Linux >= 6.16 has SO_PASSRIGHTS: the broker turns it off on its control
// socket (accepted connections inherit it at connect), so a sendmsg carrying
// SCM_RIGHTS fails at the sender with EPERM and nothing reaches the broker.
// Older kernels deliver the descriptors, and the broker must close what
// arrived (MSG_CTRUNC and unexpected descriptors are bad requests). Each test
// checks whichever of the two this kernel does.
bool kernel_refuses_rights() {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) return false;
  int off = 0;
  bool supported = ::setsockopt(pair[1], SOL_SOCKET, 83 /* SO_PASSRIGHTS */, &off, sizeof off) == 0;
  ::close(pair[0]);
  ::close(pair[1]);
  return supported;
}

// On a kernel with SO_PASSRIGHTS: the send is refused, nothing reaches the
// broker, and the connection stays usable.
void expect_refused_at_sender(const Broker& broker, const std::vector<int>& fds) {
  UniqueFd conn = connect_control(broker.control());
  ASSERT_TRUE(conn);
  EXPECT_EQ(send_raw(conn.get(), acquire_request("nosuch"), fds), EPERM);
  EXPECT_TRUE(list_page(conn.get(), 0)) << "the connection still serves after the refused send";
}

// A netns = "request" socket in the policy makes the broker accept
// descriptors (SO_PASSRIGHTS on, where the kernel has it): with it, this
// kernel delivers what a client attaches, as kernels before 6.16 always do.
const char* const kRequestNetnsSocket = R"(
[socket.container]
listen = "127.0.0.1:21443"
netns = "request"
[[socket.container.allow]]
user = "nobody"
)";

TEST_F(Adversarial, ScmMaxFdDescriptorsInOneDatagramAreRefusedAtTheSender) {
  if (!kernel_refuses_rights()) {
    GTEST_SKIP() << "this kernel has no SO_PASSRIGHTS (Linux < 6.16): the next test covers what arrives";
  }
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Pipe pipe;
  expect_refused_at_sender(*broker, std::vector<int>(253, pipe.write.get()));
  EXPECT_TRUE(broker->wait_for_events("bad_request", 0).empty()) << "nothing reached the broker";
  pipe.write.reset();
  EXPECT_TRUE(other_end_closed(pipe.read.get(), POLLHUP, 3000)) << "a reference to the pipe survived";
  expect_still_serving(*broker, baseline);
}

// The broker takes every descriptor a datagram can carry (SCM_MAX_FD): one
// that did not fit would be released by the kernel on the broker's loop.
TEST_F(Adversarial, ScmMaxFdDescriptorsInOneDatagramAreAllTakenAndReleased) {
  TempDir dir;
  auto broker = Broker::start(dir, policy("", kRequestNetnsSocket));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Pipe pipe;
  // SCM_MAX_FD (253) references to the pipe's write end: its read end sees
  // end of file only once every one of them is closed.
  UniqueFd conn = connect_control(broker->control());
  EXPECT_EQ(send_raw(conn.get(), acquire_request("nosuch"), std::vector<int>(254, pipe.write.get())), EINVAL)
      << "the kernel's limit is 253";
  ASSERT_EQ(send_raw(conn.get(), acquire_request("nosuch"), std::vector<int>(253, pipe.write.get())), 0);
  EXPECT_TRUE(rejected_then_hung_up(conn.get(), "253 unexpected descriptor(s)"));
  EXPECT_TRUE(broker->wait_for_events("bad_request", 1).back()["message"].get<std::string>().find("truncated") ==
              std::string::npos)
      << "nothing may be left to the kernel to release";
  conn.reset();
  pipe.write.reset();
  EXPECT_TRUE(other_end_closed(pipe.read.get(), POLLHUP, 5000)) << "a reference to the pipe survived";
  expect_still_serving(*broker, baseline);
}

// ---------------------------------------------------------------------------
// Descriptors whose release would block (security review, round 2, item 1)
//
// close(2) of the last reference to a TCP socket with SO_LINGER {1, 3600}
// and a send queue that cannot drain waits for up to an hour. Released on the
// broker's loop, one such socket froze every client and SIGTERM.

// A TCP socket whose last close would wait for an hour: SO_LINGER {1, 3600},
// and a send queue its peer (a listener that never accepts, whose receive
// window is full) never drains while `listener` stays open.
struct LingeringSocket {
  UniqueFd socket;
  UniqueFd listener;
};

std::optional<LingeringSocket> lingering_socket(std::string& why) {
  LingeringSocket out;
  out.listener.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int small = 1024;
  ::setsockopt(out.listener.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  sockaddr_in address = sbtest::ipv4_address(0);
  socklen_t length = sizeof address;
  if (::bind(out.listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(out.listener.get(), 1) != 0 ||
      ::getsockname(out.listener.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    why = std::string("listener: ") + std::strerror(errno);
    return std::nullopt;
  }
  out.socket.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (::connect(out.socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    why = std::string("connect: ") + std::strerror(errno);
    return std::nullopt;
  }
  ::fcntl(out.socket.get(), F_SETFL, O_NONBLOCK);
  std::vector<char> chunk(65536, 'x');
  std::size_t sent = 0;
  while (sent < (64u << 20)) {
    ssize_t n = ::send(out.socket.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  int queued = 0;
  ::ioctl(out.socket.get(), TIOCOUTQ, &queued);
  if (queued <= 0) {
    why = "the send queue drained";
    return std::nullopt;
  }
  linger hour{1, 3600};
  if (::setsockopt(out.socket.get(), SOL_SOCKET, SO_LINGER, &hour, sizeof hour) != 0) {
    why = std::string("SO_LINGER: ") + std::strerror(errno);
    return std::nullopt;
  }
  return out;
}

// The attacker (uid 65534) builds the socket, hands it over with `deliver`
// and closes its own copy, so that the broker holds the last reference; once
// the test has probed the broker, it shows the socket was released by taking
// the connection from its listener and reading to the end (or a reset).
// Returns the attacker, once delivered.
std::unique_ptr<Child> deliver_lingering_socket(Pipe& delivered, Pipe& checked,
                                                const std::function<int(int socket, int report)>& deliver) {
  auto child = std::make_unique<Child>(sbtest::kNobody, sbtest::kNogroup, [&delivered, &checked, deliver](int report) {
    std::string why;
    auto lingering = lingering_socket(why);
    if (!lingering) {
      sbtest::report(report, "cannot build a lingering socket: " + why);
      return 10;
    }
    if (int status = deliver(lingering->socket.get(), report); status != 0) {
      sbtest::report(report, "delivering the lingering socket failed: " + std::to_string(status));
      return status;
    }
    lingering->socket.reset();
    notify(delivered);
    if (!await(checked)) return 11;
    UniqueFd peer(::accept4(lingering->listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!peer) return 12;
    char buffer[65536];
    for (auto until = Clock::now() + std::chrono::seconds(20); Clock::now() < until;) {
      pollfd p{peer.get(), POLLIN, 1000};
      if (::poll(&p, 1, 1000) <= 0) continue;
      ssize_t n = ::recv(peer.get(), buffer, sizeof buffer, 0);
      if (n == 0 || (n < 0 && errno == ECONNRESET)) return 0;  // closed by whoever held it last
      if (n < 0) return 13;
    }
    sbtest::report(report, "the lingering socket was never released");
    return 14;
  });
  delivered.write.reset();  // an attacker that fails is seen at once (end of file), not after a timeout
  return child;
}

// What the broker must still do with the lingering socket in its hands (or
// in its disposer's): answer others at once, and stop at once on SIGTERM.
void expect_not_frozen(Broker& broker, int baseline, Pipe& checked, std::unique_ptr<Child>& attacker) {
  EXPECT_TRUE(answers_within(broker, 2000))
      << "the broker froze on a lingering socket (state " << process_state(broker.pid()) << ", in "
      << sbtest::read_file("/proc/" + std::to_string(broker.pid()) + "/wchan") << ", system call "
      << sbtest::read_file("/proc/" + std::to_string(broker.pid()) + "/syscall") << "):\n"
      << broker.log();
  notify(checked);
  sbtest::ChildResult result = attacker->wait();
  EXPECT_EQ(result.exit_code, 0) << result.output;
  expect_still_serving(broker, baseline);
  const auto before = Clock::now();
  EXPECT_EQ(broker.stop(), 0);
  EXPECT_LT(Clock::now() - before, std::chrono::seconds(5)) << "SIGTERM waited";
}

TEST_F(Adversarial, LingeringSocketAttachedToARequestDoesNotFreezeTheBroker) {
  TempDir dir;
  auto broker = Broker::start(dir, policy("", kRequestNetnsSocket));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Pipe delivered, checked;
  // Paused while the attacker sends and closes its own copy: the broker's is
  // then the last reference (and the attacker's own close cannot linger).
  auto paused = std::make_unique<PausedBroker>(*broker);
  const std::string control = broker->control();
  auto attacker = deliver_lingering_socket(delivered, checked, [control](int socket, int report) {
    static UniqueFd conn;  // open until the child exits: the broker answers it
    conn = connect_control(control);
    if (!conn) return 20;
    if (int err = send_raw(conn.get(), acquire_request("web"), {socket}); err != 0) {
      sbtest::report(report, std::string("send: ") + std::strerror(err));
      return 21;
    }
    return 0;
  });
  ASSERT_TRUE(await(delivered)) << attacker->wait().output;
  paused.reset();
  auto bad = broker->wait_for_events("bad_request");
  ASSERT_FALSE(bad.empty()) << broker->log() << sbtest::read_file(dir.file("audit.log"));
  EXPECT_NE(bad[0]["message"].get<std::string>().find("1 unexpected descriptor(s)"), std::string::npos) << bad[0].dump();
  expect_not_frozen(*broker, baseline, checked, attacker);
}

// The same socket queued behind a bad request: the broker hangs up on that
// client, and what is still queued on the connection is released with it.
TEST_F(Adversarial, LingeringSocketQueuedOnAConnectionTheBrokerClosesDoesNotFreezeIt) {
  TempDir dir;
  auto broker = Broker::start(dir, policy("", kRequestNetnsSocket));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Pipe delivered, checked;
  auto paused = std::make_unique<PausedBroker>(*broker);
  const std::string control = broker->control();
  auto attacker = deliver_lingering_socket(delivered, checked, [control](int socket, int) {
    UniqueFd conn = connect_control(control);
    if (!conn || send_raw(conn.get(), Bytes(16, std::byte{0x42})) != 0) return 20;
    for (int i = 0; i < 3; ++i) {
      if (send_raw(conn.get(), list_request(0)) != 0) return 21;
    }
    if (send_raw(conn.get(), list_request(0), {socket}) != 0) return 22;
    return 0;  // the connection stays open: the broker closes it
  });
  ASSERT_TRUE(await(delivered)) << attacker->wait().output;
  paused.reset();
  expect_not_frozen(*broker, baseline, checked, attacker);
}

// The same socket on a connection the broker refuses at once (a connection
// limit), before it has read anything from it.
TEST_F(Adversarial, LingeringSocketOnARefusedConnectionDoesNotFreezeTheBroker) {
  TempDir dir;
  auto broker = Broker::start(dir, policy("max_clients_per_uid = 1", kRequestNetnsSocket));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Pipe delivered, checked;
  auto paused = std::make_unique<PausedBroker>(*broker);
  const std::string control = broker->control();
  auto attacker = deliver_lingering_socket(delivered, checked, [control](int socket, int) {
    static UniqueFd first;  // holds uid 65534's one connection while the child lives
    first = connect_control(control);
    UniqueFd second = connect_control(control);
    if (!first || !second || send_raw(second.get(), list_request(0), {socket}) != 0) return 20;
    return 0;
  });
  ASSERT_TRUE(await(delivered)) << attacker->wait().output;
  paused.reset();
  EXPECT_FALSE(broker->wait_for_events("deny").empty()) << "the second connection was refused";
  expect_not_frozen(*broker, baseline, checked, attacker);
}

// Many at once: the broker answers throughout, and holds none of them after.
TEST_F(Adversarial, AFloodOfLingeringSocketsDoesNotFreezeTheBroker) {
  TempDir dir;
  auto broker = Broker::start(dir, policy("", kRequestNetnsSocket));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Pipe delivered, checked;
  auto paused = std::make_unique<PausedBroker>(*broker);
  const std::string control = broker->control();
  auto attacker = deliver_lingering_socket(delivered, checked, [control](int socket, int) {
    // 204 requests, each carrying the same lingering socket twice, queued on
    // connections the broker accepts once resumed: every one of its copies
    // must be released without waiting. 12 connections of 17 requests: a
    // stopped broker's listen backlog (16) holds no more connections, and a
    // connection whose first request is refused has the others released
    // with it.
    static std::vector<UniqueFd> connections;
    for (int i = 0; i < 12; ++i) {
      UniqueFd conn = connect_control(control);
      if (!conn) return 20;
      for (int j = 0; j < 17; ++j) {
        if (send_raw(conn.get(), acquire_request("web"), {socket, socket}) != 0) return 21;
      }
      if (i % 2 == 0) connections.push_back(std::move(conn));  // the others hang up at once
    }
    return 0;
  });
  ASSERT_TRUE(await(delivered)) << attacker->wait().output;
  paused.reset();
  expect_not_frozen(*broker, baseline, checked, attacker);
}

TEST_F(Adversarial, DescriptorsOnAnOtherwiseValidRequestAreClosed) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  if (kernel_refuses_rights()) {
    Pipe pipe;
    expect_refused_at_sender(*broker, {pipe.write.get()});
    expect_refused_at_sender(*broker, {pipe.read.get()});
    UniqueFd conn = connect_control(broker->control());
    EXPECT_EQ(send_raw(conn.get(), list_request(0), {conn.get()}), EPERM) << "the connection sent over itself";
    pipe.write.reset();
    EXPECT_TRUE(other_end_closed(pipe.read.get(), POLLHUP, 3000)) << "a reference to the pipe survived";
  } else {
    {
      // The write end goes to the broker: our read end sees EOF once our copy
      // and the broker's are both closed, and not before.
      Pipe pipe;
      EXPECT_TRUE(rejected_on_fresh_connection(*broker, list_request(0), "1 unexpected descriptor(s)", {pipe.write.get()}));
      EXPECT_FALSE(other_end_closed(pipe.read.get(), POLLHUP, 0)) << "our own write end is still open";
      pipe.write.reset();
      EXPECT_TRUE(other_end_closed(pipe.read.get(), POLLHUP, 3000)) << "the broker kept the write end";
    }
    {
      // The read end goes to the broker: writing fails (POLLERR, EPIPE) once no
      // reader is left anywhere.
      Pipe pipe;
      EXPECT_TRUE(rejected_on_fresh_connection(*broker, list_request(0), "1 unexpected descriptor(s)", {pipe.read.get()}));
      EXPECT_FALSE(other_end_closed(pipe.write.get(), POLLERR, 0)) << "our own read end is still open";
      pipe.read.reset();
      EXPECT_TRUE(other_end_closed(pipe.write.get(), POLLERR, 3000)) << "the broker kept the read end";
    }
    {
      // The connection itself, sent over itself: an in-flight Unix socket (the
      // kernel's garbage-collected case) that the broker must close too.
      UniqueFd conn = connect_control(broker->control());
      ASSERT_EQ(send_raw(conn.get(), list_request(0), {conn.get()}), 0);
      EXPECT_TRUE(rejected_then_hung_up(conn.get(), "1 unexpected descriptor(s)"));
    }
  }
  expect_still_serving(*broker, baseline);
}

// ---------------------------------------------------------------------------
// Connections that misbehave over time

TEST_F(Adversarial, IdleClientIsDroppedAtRequestTimeout) {
  TempDir dir;
  auto broker = Broker::start(dir, policy("request_timeout_ms = 200"));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  auto connected = Clock::now();
  UniqueFd idle = connect_control(broker->control());
  UniqueFd asked_once = connect_control(broker->control());
  ASSERT_TRUE(idle && asked_once);
  ASSERT_TRUE(list_page(asked_once.get(), 0));  // active once, then idle
  EXPECT_TRUE(sbtest::grants(*broker, "web")) << "served while the idle ones wait";
  Incoming end = receive(idle.get(), 3000);
  auto waited = Clock::now() - connected;
  EXPECT_EQ(end.size, 0) << describe(end);
  EXPECT_GE(waited, std::chrono::milliseconds(150));
  EXPECT_LT(waited, std::chrono::milliseconds(2500));
  Incoming end_too = receive(asked_once.get(), 3000);
  EXPECT_EQ(end_too.size, 0) << describe(end_too);
  idle.reset();
  asked_once.reset();
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, TenThousandConnectionsFromOneUidAreCappedAndOthersStillServed) {
  TempDir dir;
  auto broker = Broker::start(dir, policy("max_clients_per_uid = 64\nrequest_timeout_ms = 30000"));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  constexpr int kTotal = 10000;
  constexpr int kAllowed = 64;
  Pipe holding, flood, flooded, release;
  Child attacker(sbtest::kNobody, sbtest::kNogroup, [&](int report_fd) {
    // The first 64 are admitted: each gets its listing, and stays open.
    std::vector<UniqueFd> held;
    for (int i = 0; i < kAllowed; ++i) {
      UniqueFd conn = connect_control(broker->control());
      if (!conn || send_raw(conn.get(), list_request(0)) != 0) return 1;
      Incoming in = receive(conn.get());
      auto reply = reply_of(in);
      if (!reply || !std::holds_alternative<proto::Listing>(*reply)) {
        sbtest::report(report_fd, "connection " + std::to_string(i) + ": " + describe(in));
        return 2;
      }
      held.push_back(std::move(conn));
    }
    notify(holding);
    if (!await(flood)) return 3;
    // The rest, in batches that are open at once: each is refused with a
    // quota failure naming the limit, then hung up on.
    int refused = 0;
    for (int done = kAllowed; done < kTotal;) {
      int n = std::min(250, kTotal - done);
      std::vector<UniqueFd> batch;
      for (int i = 0; i < n; ++i) batch.push_back(connect_control(broker->control()));
      for (auto& conn : batch) {
        Incoming in = receive(conn.get());
        if (!conn || !is_failure(in, proto::ErrorCode::quota, "max_clients_per_uid") || receive(conn.get()).size != 0) {
          sbtest::report(report_fd, "expected a refusal, got " + describe(in));
          return 4;
        }
        ++refused;
      }
      done += n;
    }
    sbtest::report(report_fd, "refused " + std::to_string(refused));
    notify(flooded);
    return await(release) ? 0 : 5;
  });
  ASSERT_TRUE(await(holding));
  EXPECT_TRUE(sbtest::grants(*broker, "web", kDaemon, kDaemonGroup)) << "another uid while 64 are held";
  notify(flood);
  // Served during the flood, too.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(sbtest::grants(*broker, "web", kDaemon, kDaemonGroup));
  ASSERT_TRUE(await(flooded, 60000));
  EXPECT_TRUE(sbtest::grants(*broker, "web", kDaemon, kDaemonGroup));
  // Each admitted connection costs two descriptors: it and its pidfd.
  EXPECT_EQ(broker->wait_for_fd_count(baseline + 2 * kAllowed), baseline + 2 * kAllowed) << broker->fd_listing();
  notify(release);
  auto result = attacker.wait();
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("refused " + std::to_string(kTotal - kAllowed)), std::string::npos) << result.output;
  // Every refusal is accounted for in the trail: as its own deny event, or
  // (past the uid's audit rate limit, audit_rate_limit.hpp) in the count of a
  // suppressed event, due at the end of its window.
  std::size_t limits = 0, suppressed = 0;
  EXPECT_TRUE(sbtest::wait_until(
      [&] {
        limits = suppressed = 0;
        for (const auto& e : broker->audit_events()) {
          if (e.value("event", "") == "deny" && e.value("reason", "") == "limit") ++limits;
          if (e.value("event", "") == "suppressed" && e["uid"] == sbtest::kNobody) suppressed += e["count"].get<std::size_t>();
        }
        return limits + suppressed == static_cast<std::size_t>(kTotal - kAllowed);
      },
      std::chrono::seconds(15), std::chrono::milliseconds(100)));
  EXPECT_EQ(limits + suppressed, static_cast<std::size_t>(kTotal - kAllowed)) << limits << " + " << suppressed;
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, ClientThatNeverReadsCostsOneReplyAndOthersAreServed) {
  TempDir dir;
  // The grant lines count what the broker has answered at each moment: each
  // must be in the file when its reply is sent, not a batch later.
  auto broker = Broker::start(dir, policy("request_timeout_ms = 20000"), {"--audit-flush-ms", "0"});
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Pipe stalled, read_now;
  Child greedy(sbtest::kNobody, sbtest::kNogroup, [&](int report_fd) {
    UniqueFd conn = connect_control(broker->control());
    Bytes request = acquire_request("web");
    int sent = 0;
    // Send until the socket takes no more for a while: the broker has stopped reading.
    while (sent < 100000) {
      if (send_raw(conn.get(), request, {}, MSG_DONTWAIT) == 0) {
        ++sent;
        continue;
      }
      // A broker that takes nothing for a second has stopped reading us.
      pollfd room{conn.get(), POLLOUT, 0};
      if (::poll(&room, 1, 1000) != 1) break;
    }
    (void)!::write(stalled.write.get(), &sent, sizeof sent);
    if (!await(read_now)) return 1;
    // Nothing was dropped: every request is answered, in order, once read.
    for (int i = 0; i < sent; ++i) {
      Incoming in = receive(conn.get());
      if (!is_grant(in)) {
        sbtest::report(report_fd, "reply " + std::to_string(i) + " of " + std::to_string(sent) + ": " + describe(in));
        return 2;
      }
    }
    return 0;
  });
  int sent = 0;
  pollfd p{stalled.read.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 30000), 1);
  ASSERT_EQ(::read(stalled.read.get(), &sent, sizeof sent), static_cast<ssize_t>(sizeof sent));
  // The broker answers until the client's unread replies fill its socket,
  // keeps one reply pending and stops reading: the grants stop short of
  // what was sent and stay there.
  auto grants = [&] { return broker->wait_for_events("grant", 0).size(); };
  std::size_t answered = grants();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(grants(), answered) << "still reading a session whose replies pile up";
  EXPECT_LT(answered, static_cast<std::size_t>(sent));
  // One session (connection, pidfd) and one holder pidfd: a pending reply
  // carries the shared socket, not a copy of it.
  EXPECT_EQ(broker->wait_for_fd_count(baseline + 3), baseline + 3) << broker->fd_listing();
  EXPECT_TRUE(sbtest::grants(*broker, "web")) << "served while one client sits on its replies";
  notify(read_now);
  auto result = greedy.wait();
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(grants(), static_cast<std::size_t>(sent) + 1);  // and the other client's
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, ClientThatNeverReadsIsDroppedAtRequestTimeout) {
  TempDir dir;
  auto broker = Broker::start(dir, policy("request_timeout_ms = 300"));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Pipe stalled, done;
  Child greedy(sbtest::kNobody, sbtest::kNogroup, [&](int) {
    UniqueFd conn = connect_control(broker->control());
    Bytes request = acquire_request("web");
    for (int i = 0; i < 100000;) {
      if (send_raw(conn.get(), request, {}, MSG_DONTWAIT) == 0) {
        ++i;
        continue;
      }
      pollfd room{conn.get(), POLLOUT, 0};
      if (::poll(&room, 1, 100) != 1) break;
    }
    notify(stalled);
    return await(done) ? 0 : 1;
  });
  ASSERT_TRUE(await(stalled));
  // The session goes at the timeout although its process lives on. The
  // holder's pidfd stays: the broker granted it sockets, read or not.
  EXPECT_EQ(broker->wait_for_fd_count(baseline + 1), baseline + 1) << broker->fd_listing();
  notify(done);
  EXPECT_EQ(greedy.wait().exit_code, 0);
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, ClientExitingMidRequestLeavesNoLease) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  {
    // Deterministic: the broker reads the requests only after the client has
    // exited and been reaped, and grants to a process that is gone.
    PausedBroker paused(*broker);
    Child quitter(sbtest::kNobody, sbtest::kNogroup, [&](int) {
      UniqueFd conn = connect_control(broker->control());
      for (int i = 0; i < 3; ++i) (void)send_raw(conn.get(), acquire_request("web"));
      return 0;
    });
    EXPECT_EQ(quitter.wait().exit_code, 0);
    paused.resume();
  }
  // A grant leased to a process that is gone would stop counting at once
  // while whoever holds the connection keeps the socket (security review,
  // round 2, item 6): the broker refuses it instead.
  auto gone = broker->wait_for_events("deny");
  ASSERT_GE(gone.size(), 1u);
  EXPECT_EQ(gone[0]["reason"], "requester_gone") << gone[0].dump();
  EXPECT_TRUE(broker->wait_for_events("grant", 0).empty());
  // Racy on purpose: exits at every point of the exchange.
  for (int i = 0; i < 20; ++i) {
    auto quitter = sbtest::run_as_nobody([&](int) {
      UniqueFd conn = connect_control(broker->control());
      (void)send_raw(conn.get(), acquire_request("web"));
      if (i % 2 == 0) {
        Pipe pipe;
        (void)send_raw(conn.get(), acquire_request("web"), {pipe.read.get()});
      }
      return 0;
    });
    EXPECT_EQ(quitter.exit_code, 0);
  }
  EXPECT_EQ(wait_for_holders(*broker, "web", 0), 0u);
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, ReplyStaysReadableWhenTheClientKeepsSendingAfterABadRequest) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  UniqueFd conn = connect_control(broker->control());
  {
    // All queued before the broker reads the first: a bad request, then more.
    PausedBroker paused(*broker);
    ASSERT_EQ(send_raw(conn.get(), Bytes(16, std::byte{0x42})), 0);
    for (int i = 0; i < 10; ++i) ASSERT_EQ(send_raw(conn.get(), list_request(0)), 0);
    paused.resume();
  }
  // Read only once the broker has closed its end. Closing a socket with
  // unread datagrams would reset us (ECONNRESET): the broker discards them first.
  EXPECT_EQ(broker->wait_for_fd_count(baseline), baseline) << broker->fd_listing();
  EXPECT_TRUE(rejected_then_hung_up(conn.get(), "more than one segment"));
  // And after it hung up, sending fails instead of reaching anyone.
  EXPECT_EQ(send_raw(conn.get(), list_request(0)), EPIPE);
  conn.reset();
  expect_still_serving(*broker, baseline);
}

// Found by this suite: before hanging up on a misbehaving client the broker
// discarded at most 64 unread datagrams, but a client may queue several
// hundred (its send buffer bounds a connected SOCK_SEQPACKET socket). Closing
// with the rest unread resets the client, whose next recv() then returns
// ECONNRESET ahead of the failure reply. The broker now drains the queue.
TEST_F(Adversarial, ReplyStaysReadableAfterHundredsOfDatagramsFollowABadRequest) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  UniqueFd conn = connect_control(broker->control());
  int queued = 0;
  {
    PausedBroker paused(*broker);
    ASSERT_EQ(send_raw(conn.get(), Bytes(16, std::byte{0x42})), 0);
    while (queued < 200 && send_raw(conn.get(), list_request(0), {}, MSG_DONTWAIT) == 0) ++queued;
    paused.resume();
  }
  ASSERT_GT(queued, 64);
  EXPECT_EQ(broker->wait_for_fd_count(baseline), baseline) << broker->fd_listing();
  Incoming first = receive(conn.get());
  EXPECT_TRUE(is_failure(first, proto::ErrorCode::protocol, "more than one segment"))
      << queued << " datagrams queued; the read after it: " << describe(receive(conn.get()));
  conn.reset();
  expect_still_serving(*broker, baseline);
}

// ---------------------------------------------------------------------------
// Identity: connect time is what counts

const char* const kDaemonOnly = R"(
[socket.daemon_only]
listen = "127.0.0.1:21081"
[[socket.daemon_only.allow]]
user = "daemon"
)";

// Connects as one uid and passes the connection over `pair` to a process of
// another uid, which asks for daemon_only on it. Returns what the receiver
// reported and the connector's pid.
struct Handover {
  sbtest::ChildResult receiver;
  pid_t connector_pid;
};
Handover hand_over(const Broker& broker, uid_t from_uid, gid_t from_gid, uid_t to_uid, gid_t to_gid) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) std::abort();
  UniqueFd near(pair[0]), far(pair[1]);
  Pipe release;
  Child connector(from_uid, from_gid, [&](int) {
    UniqueFd conn = connect_control(broker.control());
    const std::byte one[1] = {std::byte{1}};
    if (!conn || send_raw(near.get(), one, {conn.get()}) != 0) return 1;
    conn.reset();
    return await(release) ? 0 : 2;  // alive until the receiver is done
  });
  Child receiver(to_uid, to_gid, [&](int report_fd) {
    UniqueFd conn = receive_fd(far.get());
    if (!conn) return 1;
    if (send_raw(conn.get(), acquire_request("daemon_only")) != 0) return 2;
    Incoming in = receive(conn.get());
    sbtest::report(report_fd, describe(in));
    return is_grant(in) ? 0 : 3;
  });
  Handover out{receiver.wait(), connector.pid()};
  notify(release);
  (void)connector.wait();
  return out;
}

// A connection handed to another process carries its connector's identity
// (SO_PEERCRED is read at connect time), so the broker answers requests only
// from the connector itself (SCM_CREDENTIALS names each request's sender):
// one uid cannot lend another its rights by passing a connection (security
// review, round 2, items 3 and 6).
TEST_F(Adversarial, HandedOverConnectionServesNoOneButItsConnector) {
  TempDir dir;
  auto broker = Broker::start(dir, policy("", kDaemonOnly));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);

  // daemon connects, nobody asks: refused, though daemon would be granted.
  auto lent = hand_over(*broker, kDaemon, kDaemonGroup, sbtest::kNobody, sbtest::kNogroup);
  EXPECT_EQ(lent.receiver.exit_code, 3) << lent.receiver.output;
  EXPECT_NE(lent.receiver.output.find("not from the process that connected (pid " + std::to_string(lent.connector_pid)),
            std::string::npos)
      << lent.receiver.output;

  // nobody connects, daemon asks: refused too.
  auto borrowed = hand_over(*broker, sbtest::kNobody, sbtest::kNogroup, kDaemon, kDaemonGroup);
  EXPECT_EQ(borrowed.receiver.exit_code, 3) << borrowed.receiver.output;
  EXPECT_NE(borrowed.receiver.output.find("failure denied"), std::string::npos) << borrowed.receiver.output;

  EXPECT_TRUE(broker->wait_for_events("grant", 0).empty());
  auto denials = broker->wait_for_events("deny", 2);
  ASSERT_EQ(denials.size(), 2u);
  EXPECT_EQ(denials[0]["reason"], "not_the_connector");
  EXPECT_EQ(denials[0]["peer"]["uid"], kDaemon);
  EXPECT_EQ(denials[0]["peer"]["pid"], lent.connector_pid);
  EXPECT_EQ(denials[1]["peer"]["uid"], sbtest::kNobody);
  EXPECT_EQ(denials[1]["peer"]["pid"], borrowed.connector_pid);
  EXPECT_EQ(wait_for_holders(*broker, "daemon_only", 0), 0u);
  expect_still_serving(*broker, baseline);
}

// clone3 with set_tid: a child with exactly the pid `wanted` (root may choose
// pids, as CRIU does). It waits for a byte on `hold` and exits; it runs no
// library code that might trust state copied from the parent.
pid_t fork_with_pid(pid_t wanted, int hold) {
  struct {
    std::uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size,
        cgroup;
  } args{};
  pid_t tids[1] = {wanted};
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<std::uintptr_t>(tids);
  args.set_tid_size = 1;
  long pid = ::syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) {
    char byte;
    (void)!::read(hold, &byte, 1);
    ::syscall(SYS_exit_group, 0);
  }
  return static_cast<pid_t>(pid);
}

TEST_F(Adversarial, ConnectionWhoseCreatorExitedBeforeAcceptGetsNoExecutable) {
  TempDir dir;
  // Children forked from this test run its binary: the rule a live child meets.
  std::string self = fs::read_symlink("/proc/self/exe").string();
  auto broker = Broker::start(dir, policy("", R"(
[socket.exe_only]
listen = "127.0.0.1:21082"
[[socket.exe_only.allow]]
executable = ")" + self + R"("

[socket.user_ok]
listen = "127.0.0.1:21083"
[[socket.user_ok.allow]]
user = "nobody"
)"));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  ASSERT_TRUE(sbtest::grants(*broker, "exe_only")) << "a live process running " << self << " qualifies";

  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd near(pair[0]), far(pair[1]);
  Pipe hold;
  Child survivor(sbtest::kNobody, sbtest::kNogroup, [&](int report_fd) {
    UniqueFd conn = receive_fd(far.get());
    if (!conn) return 1;
    for (const char* name : {"exe_only", "user_ok"}) {
      if (send_raw(conn.get(), acquire_request(name)) != 0) return 2;
      Incoming in = receive(conn.get(), 10000);
      sbtest::report(report_fd, std::string(name) + ": " + describe(in));
    }
    return 0;
  });
  pid_t creator_pid = -1;
  pid_t successor = -1;
  int successor_errno = 0;
  {
    // The broker reads identity at accept time: make that after the creator is gone.
    PausedBroker paused(*broker);
    Child creator(sbtest::kNobody, sbtest::kNogroup, [&](int) {
      UniqueFd conn = connect_control(broker->control());
      const std::byte one[1] = {std::byte{1}};
      return conn && send_raw(near.get(), one, {conn.get()}) == 0 ? 0 : 1;
    });
    creator_pid = creator.pid();
    ASSERT_EQ(creator.wait().exit_code, 0);
    // Its pid recycled by a process that runs the very executable the rule
    // names: /proc/PID now describes the successor, which must not count.
    // (Linux 6.18 hands out SO_PEERPIDFD even for a reaped peer, so what
    // refuses it is the broker's check that the pidfd's process still lives.)
    successor = fork_with_pid(creator_pid, hold.read.get());
    if (successor < 0) successor_errno = errno;
    paused.resume();
  }
  auto result = survivor.wait();
  notify(hold);
  if (successor > 0) ::waitpid(successor, nullptr, 0);
  if (successor < 0) {
    std::cerr << "note: could not recycle pid " << creator_pid << ": " << std::strerror(successor_errno) << "\n";
  } else {
    EXPECT_EQ(successor, creator_pid);
  }
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("exe_only: failure denied"), std::string::npos) << result.output;
  // The survivor is not the connector: nothing is granted to it on that
  // connection (HandedOverConnectionServesNoOneButItsConnector).
  EXPECT_NE(result.output.find("user_ok: failure denied"), std::string::npos) << result.output;
  auto denials = broker->wait_for_events("deny", 2);
  ASSERT_EQ(denials.size(), 2u);
  EXPECT_EQ(denials[1]["socket"], "user_ok");
  EXPECT_EQ(denials[1]["reason"], "not_the_connector");
  EXPECT_EQ(denials[0]["socket"], "exe_only");
  EXPECT_EQ(denials[0]["peer"]["pid"], creator_pid);
  EXPECT_TRUE(denials[0]["peer"]["exe"].is_null()) << denials[0].dump();
  EXPECT_TRUE(denials[0]["peer"]["unit"].is_null()) << denials[0].dump();
  expect_still_serving(*broker, baseline);
}

// ---------------------------------------------------------------------------
// Reuseport groups: nobody else may join or steer them

std::string reuse_port_group(std::uint16_t port) {
  return "\n[socket.group]\nlisten = \"0.0.0.0:" + std::to_string(port) +
         "\"\nreuse_port = true\n[[socket.group.allow]]\nuser = \"nobody\"\n";
}

TEST_F(Adversarial, SecondTenantCannotJoinTheReusePortGroup) {
  TempDir dir;
  constexpr std::uint16_t kPort = 21090;
  auto broker = Broker::start(dir, policy("", reuse_port_group(kPort)));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Pipe holding, release;
  Child worker(sbtest::kNobody, sbtest::kNogroup, [&](int report_fd) {
    auto member = sockbroker::acquire("group", broker->control());
    if (!member) {
      sbtest::report(report_fd, member.error().message);
      return 1;
    }
    notify(holding);
    return await(release) ? 0 : 2;
  });
  ASSERT_TRUE(await(holding));
  // Members belong to root (the broker made them), so not even the worker's
  // own uid may add one, with or without SO_REUSEADDR, wildcard or specific.
  for (uid_t intruder : {kDaemon, sbtest::kNobody}) {
    auto attempt = sbtest::run_as(intruder, intruder == kDaemon ? kDaemonGroup : sbtest::kNogroup, [&](int report_fd) {
      for (in_addr_t address : {INADDR_ANY, INADDR_LOOPBACK}) {
        int err = sbtest::bind_tcp(address, kPort, {.addr = true, .port = true});
        sbtest::report(report_fd, std::strerror(err));
        if (err != EADDRINUSE) return 1;
      }
      return 0;
    });
    EXPECT_EQ(attempt.exit_code, 0) << "uid " << intruder << ": " << attempt.output;
  }
  notify(release);
  EXPECT_EQ(worker.wait().exit_code, 0);
  EXPECT_EQ(wait_for_holders(*broker, "group", 0), 0u);
  expect_still_serving(*broker, baseline + sbtest::kSpareMember);
}

TEST_F(Adversarial, AttachReusePortBpfIsRefusedUnderLockdown) {
  TempDir dir;
  constexpr std::uint16_t kPort = 21091;
  auto broker = Broker::start(dir, policy("", reuse_port_group(kPort)));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  // "Always the first member": one worker steering every connection to itself.
  sock_filter code[] = {{BPF_RET | BPF_K, 0, 0, 0}};
  sock_fprog program{1, code};
  auto attach = [&](bool locked_down) {
    return sbtest::run_as_nobody([&](int report_fd) {
      auto member = sockbroker::acquire("group", broker->control());
      if (!member) return 1;
      if (locked_down && !sockbroker::lockdown()) return 2;
      if (::setsockopt(member->fd.get(), SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &program, sizeof program) == 0) {
        sbtest::report(report_fd, "cbpf attached");
        return 0;
      }
      sbtest::report(report_fd, std::string("cbpf: ") + std::strerror(errno));
      int bpf_fd = -1;  // refused before the kernel looks at the program
      if (::setsockopt(member->fd.get(), SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &bpf_fd, sizeof bpf_fd) == 0 ||
          errno != EPERM) {
        sbtest::report(report_fd, std::string("ebpf: ") + std::strerror(errno));
        return 3;
      }
      return 4;
    });
  };
  // Without the filter the kernel lets any holder steer the group: that is
  // why the lockdown must refuse it.
  auto open = attach(false);
  EXPECT_EQ(open.exit_code, 0) << open.output;
  auto locked = attach(true);
  EXPECT_EQ(locked.exit_code, 4) << locked.output;
  EXPECT_NE(locked.output.find(std::string("cbpf: ") + std::strerror(EPERM)), std::string::npos) << locked.output;
  EXPECT_EQ(wait_for_holders(*broker, "group", 0), 0u);
  expect_still_serving(*broker, baseline + sbtest::kSpareMember);
}

// ---------------------------------------------------------------------------
// Policies that would let the broker be tricked into the wrong bind

TEST_F(Adversarial, DualStackWildcardConflictsWithIpv4WildcardAndTheBrokerRefusesToStart) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  // [::]:P with v6only = false takes 0.0.0.0:P too; in either order, both
  // positions are named (file:line:column of each listen).
  const std::string v6 = "[socket.v6]\nlisten = \"[::]:21100\"\nv6only = false\n";
  const std::string v4 = "[socket.v4]\nlisten = \"0.0.0.0:21100\"\n";
  for (const auto& [name, text, first_line, second_line] :
       {std::tuple{"v6first.toml", v6 + "\n" + v4, 2, 6}, std::tuple{"v4first.toml", v4 + "\n" + v6, 2, 5}}) {
    dir.write(name, text);
    std::string output;
    int code = sbtest::run_broker_to_exit(dir, {"--policy", dir.file(name), "--control", dir.file("other.sock")}, &output);
    EXPECT_EQ(code, 78) << output;
    EXPECT_NE(output.find(dir.file(name) + ":" + std::to_string(first_line) + ":"), std::string::npos) << output;
    EXPECT_NE(output.find(dir.file(name) + ":" + std::to_string(second_line) + ":"), std::string::npos) << output;
    EXPECT_NE(output.find("conflicts"), std::string::npos) << output;
  }
  // With v6only = true they are separate sockets, and both bind.
  TempDir other;
  auto separate = Broker::start(other, "[socket.v6]\nlisten = \"[::]:21100\"\nv6only = true\n\n" + v4);
  ASSERT_TRUE(separate);
  EXPECT_EQ(separate->wait_for_events("bind", 2).size(), 2u);
  EXPECT_TRUE(separate->wait_for_events("bind_failed", 0).empty());
  separate->stop();
  // The refused starts did not disturb the broker already running.
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, SquattedAbstractNameIsBindFailedAndTheOthersServe) {
  std::string name = "sockbroker-adversarial-" + std::to_string(::getpid());
  UniqueFd squatter(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sbtest::AbstractAddress address = sbtest::abstract_address(name);
  ASSERT_EQ(::bind(squatter.get(), address.get(), address.length), 0) << std::strerror(errno);
  ASSERT_EQ(::listen(squatter.get(), 4), 0);

  TempDir dir;
  auto broker = Broker::start(dir, policy("", "\n[socket.abstract]\nlisten = \"@" + name +
                                                  "\"\nallow_abstract = true\n[[socket.abstract.allow]]\nuser = \"nobody\"\n"));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  auto failed = broker->wait_for_events("bind_failed");
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0]["socket"], "abstract");
  auto refused = sbtest::acquire_as_nobody(*broker, "abstract");
  EXPECT_EQ(refused.code, SOCKBROKER_E_BIND) << refused.message;
  // The squatter still owns its name: nothing was taken from it.
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(::connect(probe.get(), address.get(), address.length), 0);
  UniqueFd accepted(::accept4(squatter.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(accepted);
  probe.reset();
  accepted.reset();
  // Once the squatter is gone, an administrator's revoke binds it afresh.
  squatter.reset();
  {
    auto admin = sockbroker::Client::connect(broker->control());
    ASSERT_TRUE(admin);
    auto outcome = admin->revoke("abstract");
    ASSERT_TRUE(outcome) << outcome.error().message;
    EXPECT_TRUE(outcome->ok) << outcome->message;
  }
  EXPECT_TRUE(sbtest::grants(*broker, "abstract"));
  const int rebound = baseline + 1;  // the broker now holds the abstract socket
  expect_still_serving(*broker, rebound);
}

TEST_F(Adversarial, SymlinkedUnixSocketPathIsBindFailedAndLeftAlone) {
  TempDir dir;
  ASSERT_EQ(::mkdir(dir.file("run").c_str(), 0755), 0);
  dir.write("precious", "do not touch\n");
  ASSERT_EQ(::symlink(dir.file("precious").c_str(), dir.file("run/app.sock").c_str()), 0);
  ASSERT_EQ(::symlink(dir.file("victim.sock").c_str(), dir.file("run/dangling.sock").c_str()), 0);
  auto unix_socket = [&](const std::string& name, const std::string& path) {
    return "\n[socket." + name + "]\nlisten = \"" + path + "\"\n[[socket." + name + ".allow]]\nuser = \"nobody\"\n";
  };
  auto broker = Broker::start(dir, policy("", unix_socket("app", dir.file("run/app.sock")) +
                                                  unix_socket("dangling", dir.file("run/dangling.sock"))));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  auto failed = broker->wait_for_events("bind_failed", 2);
  ASSERT_EQ(failed.size(), 2u);
  for (const auto& event : failed) {
    EXPECT_NE(event["error"].get<std::string>().find("symbolic link"), std::string::npos) << event.dump();
  }
  // Both links, their targets and the directory are as they were.
  EXPECT_EQ(fs::read_symlink(dir.file("run/app.sock")).string(), dir.file("precious"));
  EXPECT_EQ(fs::read_symlink(dir.file("run/dangling.sock")).string(), dir.file("victim.sock"));
  EXPECT_FALSE(fs::exists(fs::symlink_status(dir.file("victim.sock"))));
  EXPECT_EQ(sbtest::read_file(dir.file("precious")), "do not touch\n");
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(dir.file("precious"))));
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.file("run"))) ++entries;
  EXPECT_EQ(entries, 2u) << "a leftover private directory or socket in run/";
  auto refused = sbtest::acquire_as_nobody(*broker, "app");
  EXPECT_EQ(refused.code, SOCKBROKER_E_BIND) << refused.message;
  expect_still_serving(*broker, baseline);
}

// ---------------------------------------------------------------------------
// Listing

TEST_F(Adversarial, ListCursorBeyondTheEndIsAnEmptyLastPage) {
  TempDir dir;
  auto broker = Broker::start(dir, policy("", kDaemonOnly));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  UniqueFd conn = connect_control(broker->control());
  auto all = list_page(conn.get(), 0);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->entries.size(), 2u);
  EXPECT_EQ(all->next_cursor, 0u);
  for (std::uint32_t cursor : {2U, 3U, 1000U, 0x7fffffffU, 0xffffffffU}) {
    auto page = list_page(conn.get(), cursor);
    ASSERT_TRUE(page) << cursor;
    EXPECT_TRUE(page->entries.empty()) << cursor;
    EXPECT_EQ(page->next_cursor, 0u) << cursor;
  }
  // The same connection still works: such a cursor is odd, not malformed.
  auto again = list_page(conn.get(), 1);
  ASSERT_TRUE(again);
  ASSERT_EQ(again->entries.size(), 1u);
  EXPECT_EQ(again->entries[0].name, "web");
  conn.reset();
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, ListPaginationOver300SocketsReturnsEveryEntryInOrder) {
  TempDir dir;
  constexpr int kSockets = 300;
  std::string sockets;
  std::vector<std::string> expected;
  for (int i = 0; i < kSockets; ++i) {
    char name[8];
    std::snprintf(name, sizeof name, "s%03d", i);
    expected.emplace_back(name);
    sockets += "\n[socket." + std::string(name) + "]\nlisten = \"127.0.0.1:" + std::to_string(20000 + i) +
               "\"\ntype = \"stream\"\n[[socket." + name + ".allow]]\nuser = \"nobody\"\n";
  }
  expected.emplace_back("web");  // entries come in name order
  auto broker = Broker::start(dir, policy("", sockets));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);

  // The administrator's view, page by page.
  UniqueFd conn = connect_control(broker->control());
  std::vector<std::string> seen;
  int pages = 0;
  for (std::uint32_t cursor = 0;;) {
    std::size_t wire = 0;
    auto page = list_page(conn.get(), cursor, &wire);
    ASSERT_TRUE(page);
    ++pages;
    EXPECT_LE(wire, proto::kMaxDatagram);
    EXPECT_FALSE(page->entries.empty()) << "an empty page before the end, cursor " << cursor;
    for (const auto& entry : page->entries) {
      seen.push_back(entry.name);
      EXPECT_EQ(entry.state, "bound") << entry.name << ": " << entry.detail;
    }
    if (page->next_cursor == 0) break;
    ASSERT_GT(page->next_cursor, cursor) << "the cursor must advance";
    cursor = page->next_cursor;
    ASSERT_LT(pages, 100);
  }
  conn.reset();
  EXPECT_GT(pages, 1);
  EXPECT_EQ(seen, expected);

  // A client's view, through the library's own paging.
  auto child = sbtest::run_as_nobody([&](int report_fd) {
    auto list = sockbroker::Client::connect(broker->control())->list();
    if (!list) return 1;
    for (const auto& s : list->sockets) sbtest::report(report_fd, s.name);
    return list->admin_view ? 2 : 0;
  });
  EXPECT_EQ(child.exit_code, 0);
  std::string joined;
  for (const auto& name : expected) joined += name + "\n";
  EXPECT_EQ(child.output, joined);
  expect_still_serving(*broker, baseline);
}

// ---------------------------------------------------------------------------
// Load

TEST_F(Adversarial, ReloadStormWhileClientsAcquire) {
  TempDir dir;
  auto broker = Broker::start(dir, policy("", kDaemonOnly));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Pipe started;
  Child clients(sbtest::kNobody, sbtest::kNogroup, [&](int report_fd) {
    int failures = 0;
    std::string first_inode, last_inode;
    for (int i = 0; i < 300; ++i) {
      auto grant = sockbroker::acquire("web", broker->control());
      if (!grant) {
        sbtest::report(report_fd, grant.error().message);
        ++failures;
        continue;
      }
      (i == 0 ? first_inode : last_inode) = std::to_string(sbtest::inode_of(grant->fd.get()));
      if (i == 0) notify(started);
    }
    // An unchanged entry keeps its kernel socket through every reload.
    if (first_inode != last_inode) sbtest::report(report_fd, "inode " + first_inode + " became " + last_inode);
    return failures == 0 && first_inode == last_inode ? 0 : 1;
  });
  ASSERT_TRUE(await(started));
  for (int i = 0; i < 50; ++i) ASSERT_EQ(::kill(broker->pid(), SIGHUP), 0);
  auto result = clients.wait();
  EXPECT_EQ(result.exit_code, 0) << result.output;
  // Signals coalesce: at least one reload, none refused, the same generation
  // of sockets serving.
  EXPECT_GE(broker->wait_for_events("reload").size(), 1u);
  EXPECT_TRUE(broker->wait_for_events("reload_failed", 0).empty());
  EXPECT_TRUE(sbtest::grants(*broker, "daemon_only", kDaemon, kDaemonGroup));
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, TenThousandAcquiresOnOneConnectionHoldOneLease) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  constexpr int kRequests = 10000;
  Pipe flooded, release;
  Child flooder(sbtest::kNobody, sbtest::kNogroup, [&](int report_fd) {
    auto client = sockbroker::Client::connect(broker->control());
    if (!client) return 1;
    for (int i = 0; i < kRequests; ++i) {
      auto grant = client->acquire("web");  // dropped (closed) at once
      if (!grant) {
        sbtest::report(report_fd, std::to_string(i) + ": " + grant.error().message);
        return 2;
      }
    }
    notify(flooded);
    return await(release) ? 0 : 3;
  });
  ASSERT_TRUE(await(flooded, 60000));
  // One process, one shared socket: one lease, however often it asks.
  auto entry = admin_entry(*broker, "web");
  ASSERT_TRUE(entry);
  EXPECT_EQ(entry->holders, 1u);
  EXPECT_EQ(entry->grants_total, static_cast<std::uint64_t>(kRequests));
  EXPECT_EQ(broker->wait_for_fd_count(baseline + 3), baseline + 3) << broker->fd_listing();  // connection, its pidfd, the holder's
  notify(release);
  auto result = flooder.wait();
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(wait_for_holders(*broker, "web", 0), 0u);
  expect_still_serving(*broker, baseline);
}

// ---------------------------------------------------------------------------
// Exhaustion: connections and descriptors

TEST_F(Adversarial, ReusePortPortHolderCannotBeTakenWithReuseAddr) {
  TempDir dir;
  constexpr std::uint16_t kPort = 21092;
  auto broker = Broker::start(dir, policy("", reuse_port_group(kPort)));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  // With no worker the broker holds the port with a bound, non-listening
  // socket. Two SO_REUSEADDR sockets may share a port while neither listens,
  // which is why that socket never has SO_REUSEADDR: check that an intruder
  // setting it gets nowhere.
  for (uid_t intruder : {kDaemon, sbtest::kNobody}) {
    auto attempt = sbtest::run_as(intruder, intruder == kDaemon ? kDaemonGroup : sbtest::kNogroup, [&](int report_fd) {
      int taken = 0;
      for (in_addr_t address : {INADDR_ANY, INADDR_LOOPBACK}) {
        UniqueFd fd;
        if (int err = sbtest::bind_tcp(address, kPort, {.addr = true}, &fd); err != 0) {
          sbtest::report(report_fd, std::string("bind: ") + std::strerror(err));
          continue;
        }
        sbtest::report(report_fd, "bound " + std::to_string(address));
        if (::listen(fd.get(), 4) == 0) {
          sbtest::report(report_fd, "listening");
          ++taken;
        }
      }
      return taken;
    });
    EXPECT_EQ(attempt.exit_code, 0) << "uid " << intruder << ":\n" << attempt.output;
    EXPECT_EQ(attempt.output.find("bound"), std::string::npos) << "uid " << intruder << ":\n" << attempt.output;
  }
  expect_still_serving(*broker, baseline);
}

// The broker must be serving; if it is not, it has stopped reading its
// signals too, so it is killed here (the harness's SIGTERM-and-wait would hang).
void expect_serving_or_kill(const Broker& broker, int baseline) {
  bool serving = answers_within(broker, 2000);
  EXPECT_TRUE(serving) << "the broker stopped serving";
  if (!serving) {
    ::kill(broker.pid(), SIGKILL);
    return;
  }
  expect_still_serving(broker, baseline);
}

// Lowers this process's soft RLIMIT_NOFILE while the broker starts (it
// inherits it), then restores it. The hard limit stays: lowering it could not
// be undone without CAP_SYS_RESOURCE.
std::optional<Broker> start_with_descriptor_limit(const TempDir& dir, const std::string& policy_toml, rlim_t soft) {
  rlimit saved{};
  if (::getrlimit(RLIMIT_NOFILE, &saved) != 0) return std::nullopt;
  rlimit tight{std::min(soft, saved.rlim_max), saved.rlim_max};
  if (::setrlimit(RLIMIT_NOFILE, &tight) != 0) return std::nullopt;
  auto broker = Broker::start(dir, policy_toml);
  if (::setrlimit(RLIMIT_NOFILE, &saved) != 0) std::abort();  // raising the soft limit back cannot fail
  return broker;
}

// Found by this suite: accept_clients() accepted until EAGAIN, so one process
// connecting and closing in a few threads kept the loop from ever returning
// to epoll_wait, and every connected client waited for the flood to stop.
// The broker now accepts a bounded batch per wake-up.
TEST_F(Adversarial, ConnectionFloodDoesNotStarveAConnectedClient) {
  TempDir dir;
  auto broker = Broker::start(dir, policy("request_timeout_ms = 30000"));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  UniqueFd victim = connect_control(broker->control());
  ASSERT_TRUE(list_page(victim.get(), 0));
  Pipe started;
  Child attacker(sbtest::kNobody, sbtest::kNogroup, [&](int report_fd) {
    std::atomic<long> connects{0};
    auto until = Clock::now() + std::chrono::milliseconds(1500);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        while (Clock::now() < until) {
          UniqueFd c = connect_control(broker->control());
          if (++connects == 1000) notify(started);
        }
      });
    }
    for (auto& t : threads) t.join();
    sbtest::report(report_fd, std::to_string(connects.load()) + " connections in 1.5 s");
    return 0;
  });
  ASSERT_TRUE(await(started));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto asked = Clock::now();
  ASSERT_EQ(send_raw(victim.get(), list_request(0)), 0);
  Incoming in = receive(victim.get(), 10000);
  auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - asked);
  auto result = attacker.wait();
  auto reply = reply_of(in);
  EXPECT_TRUE(reply && std::holds_alternative<proto::Listing>(*reply)) << describe(in);
  EXPECT_LT(waited, std::chrono::milliseconds(250)) << "a connected client waited while " << result.output;
  victim.reset();
  expect_serving_or_kill(*broker, baseline);
}

// Found by this suite: at RLIMIT_NOFILE the broker wedged. accept4 fails with
// EMFILE before it looks at the queue, so the accept-and-drop of the spare-fd
// trick got EAGAIN and the loop `continue`d into the same EMFILE forever (100%
// CPU, no session served, SIGTERM never read). Any uid allowed one socket got
// there with live holders alone, each costing the broker a pidfd. Now the
// broker drops one connection per wake-up and goes back to serving, and the
// number of holder processes is bounded (max_clients, max_clients_per_uid).
TEST_F(Adversarial, ManyLiveHoldersCannotWedgeTheBroker) {
  TempDir dir;
  // A small limit for a fast test; the broker's own check (max_clients +
  // sockets + 64 = 81) is satisfied by it.
  auto broker = start_with_descriptor_limit(dir, policy("max_clients = 16\nmax_clients_per_uid = 16"), 128);
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Pipe forked, release;
  Child army(sbtest::kNobody, sbtest::kNogroup, [&](int report_fd) {
    Pipe answered;
    std::vector<pid_t> holders;
    int granted = 0, refused = 0;
    for (int i = 0; i < 200; ++i) {
      pid_t pid = ::fork();
      if (pid == 0) {
        // Dies with the army, and holds no write end of `release` itself.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        ::close(release.write.get());
        auto grant = sockbroker::acquire("web", broker->control());
        (void)!::write(answered.write.get(), grant ? "g" : "r", 1);
        char byte;
        (void)!::read(release.read.get(), &byte, 1);  // hold the grant until told
        _exit(0);
      }
      holders.push_back(pid);
      pollfd p{answered.read.get(), POLLIN, 0};
      char verdict = 0;
      if (::poll(&p, 1, 2000) != 1 || ::read(answered.read.get(), &verdict, 1) != 1) {
        sbtest::report(report_fd, "holder " + std::to_string(i) + " got no answer within 2 s");
        break;
      }
      (verdict == 'g' ? granted : refused)++;
    }
    sbtest::report(report_fd, std::to_string(granted) + " granted, " + std::to_string(refused) + " refused");
    notify(forked);
    (void)await(release);
    for (pid_t pid : holders) ::kill(pid, SIGKILL);
    for (pid_t pid : holders) ::waitpid(pid, nullptr, 0);
    return 0;
  });
  ASSERT_TRUE(await(forked, 60000));
  notify(release);  // the army kills its holders
  auto result = army.wait();
  // Each request is answered, granted or refused, even at the limit...
  EXPECT_EQ(result.output.find("no answer"), std::string::npos) << result.output;
  // ...and once the holders are gone their pidfds are released and service resumes.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  expect_serving_or_kill(*broker, baseline);
}

// Found by this suite: ensure_descriptor_budget() reserved one descriptor per
// client, but every session holds two (the connection and its pidfd), every
// holder one more, every reuse_port member's dup one more. The broker now
// raises its soft limit to the hard one and warns when that is below its
// estimate.
TEST_F(Adversarial, DescriptorBudgetCoversEveryClientTheLimitsAdmit) {
  TempDir dir;
  // 300 + 1 + 64 = 365 <= 400: the broker believes 300 clients fit.
  auto broker = start_with_descriptor_limit(
      dir, policy("max_clients = 300\nmax_clients_per_uid = 300\nrequest_timeout_ms = 30000"), 400);
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  auto child = sbtest::run_as_nobody([&](int report_fd) {
    std::vector<UniqueFd> held;
    int served = 0;
    for (int i = 0; i < 250; ++i) {
      UniqueFd conn = connect_control(broker->control());
      Incoming in;
      if (conn && send_raw(conn.get(), list_request(0)) == 0) in = receive(conn.get(), 1000);
      auto reply = reply_of(in);
      if (!reply || !std::holds_alternative<proto::Listing>(*reply)) {
        sbtest::report(report_fd, "client " + std::to_string(i) + ": " + describe(in));
        break;
      }
      ++served;
      held.push_back(std::move(conn));
    }
    sbtest::report(report_fd, "served " + std::to_string(served) + " of 250");
    return served == 250 ? 0 : 1;
  });
  EXPECT_EQ(child.exit_code, 0) << child.output;
  expect_serving_or_kill(*broker, baseline);
}

}  // namespace
