// What the adversarial tests share (adversarial_*_test.cpp): hostile local
// clients against the real sockbrokerd (DESIGN.md, "Threat model"). Here:
// hand-built datagrams, raw sends and receives on the control socket, the
// policies the cases run under, and the well-behaved client each ends with.
//
// Every case ends with expect_still_serving(): the broker must still grant to
// a well-behaved client (a nobody child that then exits, so that its lease
// ends with it) and hold exactly the descriptors it held before the attack.
// The test process itself never acquires a socket the policy serves: a live
// test process is a lease holder whose pidfd the broker rightly keeps.
#pragma once

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
#include "policy_builder.hpp"

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


namespace sbadv {


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
inline constexpr uid_t kDaemon = 1;
inline constexpr gid_t kDaemonGroup = 1;

// The well-behaved client's socket, in every policy. Its port is above 20000
// (nothing else on the host uses it) and outside 20000..20299, which the
// pagination case fills.
inline constexpr std::uint16_t kWebPort = 21080;

// Every case's policy: the control socket open to every uid, and "web"
// (127.0.0.1:21080) for nobody and daemon. A case adds its [broker] settings
// with broker() and its own sockets after "web" with socket().
inline sbtest::PolicyBuilder policy() {
  return sbtest::PolicyBuilder()
      .broker("control_mode", sbtest::toml_string("0666"))
      .socket("web", "127.0.0.1:" + std::to_string(kWebPort))
      .allow_user("nobody")
      .allow_user("daemon");
}

// ---------------------------------------------------------------------------
// Processes

// 'R', 'S', 'T' (stopped), 'Z' ... from /proc/PID/stat; '?' if it is gone.
inline char process_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size() ? '?' : stat[close + 2];
}

// The two promises every case ends with.
inline void expect_still_serving(const Broker& broker, int baseline) {
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
inline int send_raw(int sock, std::span<const std::byte> bytes, const std::vector<int>& fds = {}, int flags = 0) {
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

inline Incoming receive(int sock, int timeout_ms = 5000) {
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

inline std::optional<proto::Reply> reply_of(const Incoming& in) {
  if (in.size <= 0) return std::nullopt;
  auto reply = proto::decode_reply(in.bytes);
  if (!reply) return std::nullopt;
  return *reply;
}

inline std::string describe(const Incoming& in) {
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

inline testing::AssertionResult is_failure(const Incoming& in, proto::ErrorCode code, std::string_view needle) {
  auto reply = reply_of(in);
  const auto* failure = reply ? std::get_if<proto::Failure>(&*reply) : nullptr;
  if (failure == nullptr || failure->code != code || failure->message.find(needle) == std::string::npos) {
    return testing::AssertionFailure() << "expected a " << proto::to_string(code) << " failure mentioning \"" << needle
                                       << "\", got " << describe(in);
  }
  return testing::AssertionSuccess();
}

inline bool is_grant(const Incoming& in) {
  auto reply = reply_of(in);
  return reply && std::holds_alternative<proto::Grant>(*reply) && in.fds.size() == 1;
}

// How the broker answers what it cannot accept: one protocol failure naming
// the problem, then it hangs up.
inline testing::AssertionResult rejected_then_hung_up(int sock, std::string_view needle) {
  Incoming first = receive(sock);
  if (auto verdict = is_failure(first, proto::ErrorCode::protocol, needle); !verdict) return verdict;
  Incoming second = receive(sock);
  if (second.size != 0) {
    return testing::AssertionFailure() << "expected the broker to hang up after the failure, got " << describe(second);
  }
  return testing::AssertionSuccess();
}

// One datagram on a fresh connection, and the broker's answer to it.
inline testing::AssertionResult rejected_on_fresh_connection(const Broker& broker, std::span<const std::byte> bytes,
                                                      std::string_view needle, const std::vector<int>& fds = {}) {
  UniqueFd conn = connect_control(broker.control());
  if (!conn) return testing::AssertionFailure() << "cannot connect: " << std::strerror(errno);
  if (int err = send_raw(conn.get(), bytes, fds); err != 0) {
    return testing::AssertionFailure() << "cannot send " << bytes.size() << " bytes: " << std::strerror(err);
  }
  return rejected_then_hung_up(conn.get(), needle);
}

inline Bytes encode(const proto::Request& request) {
  proto::DatagramBuffer buffer;
  auto size = proto::encode_request(request, buffer.span());
  if (!size) {
    ADD_FAILURE() << size.error().message;
    return {};
  }
  return Bytes(buffer.bytes, buffer.bytes + *size);
}

inline Bytes acquire_request(const std::string& name) { return encode(proto::Request{proto::AcquireRequest{name, 0, false}}); }
inline Bytes list_request(std::uint32_t cursor) { return encode(proto::Request{proto::ListRequest{cursor}}); }

// One administrator's page of the listing (the test process is root).
inline std::optional<proto::Listing> list_page(int sock, std::uint32_t cursor, std::size_t* wire_size = nullptr) {
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
inline bool answers_within(const Broker& broker, int timeout_ms) {
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
inline int baseline_of(const Broker& broker) {
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
inline std::optional<proto::SocketEntry> admin_entry(const Broker& broker, const std::string& name) {
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
inline std::uint32_t wait_for_holders(const Broker& broker, const std::string& name, std::uint32_t holders) {
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
inline UniqueFd receive_fd(int sock, int timeout_ms = 10000) {
  Incoming in = receive(sock, timeout_ms);
  if (in.fds.size() != 1) return UniqueFd();
  return std::move(in.fds[0]);
}

// A pipe's write end whose last reader is gone reports POLLERR; its read end
// whose last writer is gone reports POLLHUP. Either tells that every copy of
// the other end, the broker's included, has been closed.
inline bool other_end_closed(int fd, short event, int timeout_ms) {
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

inline constexpr unsigned kByteElements = 2;
inline constexpr unsigned kPointerElements = 6;

inline std::uint64_t struct_pointer(std::size_t at, std::size_t target, std::uint16_t data_words, std::uint16_t pointers) {
  auto offset = static_cast<std::uint32_t>(static_cast<std::int64_t>(target) - static_cast<std::int64_t>(at) - 1);
  return std::uint64_t{offset << 2} | std::uint64_t{data_words} << 32 | std::uint64_t{pointers} << 48;
}

inline std::uint64_t list_pointer(std::size_t at, std::size_t target, unsigned element_size, std::uint32_t count) {
  auto offset = static_cast<std::uint32_t>(static_cast<std::int64_t>(target) - static_cast<std::int64_t>(at) - 1);
  return std::uint64_t{(offset << 2) | 1} | std::uint64_t{element_size} << 32 | std::uint64_t{count} << 35;
}

inline std::uint64_t header_word(std::uint16_t version, std::uint16_t kind) {
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
inline Segment acquire_segment(std::string_view name, bool nul = true, std::uint16_t version = proto::kProtocolVersion,
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

inline Bytes acquire_message(std::string_view name, bool nul = true, std::uint16_t version = proto::kProtocolVersion,
                      std::uint16_t kind = 0) {
  return acquire_segment(name, nul, version, kind).message();
}


// `built` and "daemon_only" (127.0.0.1:21081), for user daemon alone.
inline sbtest::PolicyBuilder with_daemon_only(sbtest::PolicyBuilder built) {
  built.socket("daemon_only", "127.0.0.1:21081").allow_user("daemon");
  return built;
}

// `built` and "group", a reuse_port group on 0.0.0.0:`port` for user nobody.
inline sbtest::PolicyBuilder with_reuse_port_group(sbtest::PolicyBuilder built, std::uint16_t port) {
  built.socket("group", "0.0.0.0:" + std::to_string(port)).set("reuse_port", "true").allow_user("nobody");
  return built;
}

}  // namespace sbadv
