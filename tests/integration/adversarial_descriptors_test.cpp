// Descriptors a hostile client attaches to its requests: SCM_MAX_FD of them,
// and sockets whose release would block (security review 2, item 1). The
// broker keeps none and never blocks on one.
#include "adversarial.hpp"
#include "policy_builder.hpp"

namespace {

using namespace sbadv;
// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using Adversarial = sbtest::BrokerTest;

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
sbtest::PolicyBuilder with_request_netns_socket(sbtest::PolicyBuilder built) {
  built.socket("container", "127.0.0.1:21443").set_string("netns", "request").allow_user("nobody");
  return built;
}

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
  auto broker = Broker::start(dir, with_request_netns_socket(policy()));
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
  auto broker = Broker::start(dir, with_request_netns_socket(policy()));
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
  auto broker = Broker::start(dir, with_request_netns_socket(policy()));
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
  auto broker = Broker::start(dir, with_request_netns_socket(policy().broker("max_clients_per_uid", "1")));
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
  auto broker = Broker::start(dir, with_request_netns_socket(policy()));
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

}  // namespace
