// The integration harness: a private network namespace per test process, the
// real sockbrokerd started from a policy the test writes, and clients forked
// and dropped to uid/gid 65534 (nobody/nogroup). No mocks of the kernel.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <chrono>
#include <cstdlib>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include <sockbroker/fd.hpp>

#include "policy_builder.hpp"
#include "require_root.hpp"

namespace sbtest {

inline constexpr uid_t kNobody = 65534;
// Descriptors a reuse_port stream group keeps once it has granted a member: the
// next member, bound ahead (SocketTable::new_member). One per group, however
// many grants: fd-count checks add it to a baseline taken before the first.
inline constexpr int kSpareMember = 1;
inline constexpr gid_t kNogroup = 65534;

// Three sockets of three fates for uid 65534: "web" (0.0.0.0:80) granted to
// user nobody, "dns" (127.0.0.1:53, datagram) to group nogroup, "admin"
// (127.0.0.1:443) to root only. Add broker() settings to change the [broker] table.
inline PolicyBuilder web_dns_admin() {
  return PolicyBuilder()
      .socket("web", "0.0.0.0:80")
      .allow_user("nobody")
      .socket("dns", "127.0.0.1:53")
      .set_string("type", "datagram")
      .allow({{"group", "nogroup"}})
      .socket("admin", "127.0.0.1:443")
      .allow_user("root");
}

// Moves this test process into a fresh network namespace with "lo" up, once.
// Every test binary run by ctest is one test, so namespaces never leak across tests.
void enter_private_netns();

// Sets "lo" up in the calling thread's network namespace (a new one starts
// with it down). Returns "" or what failed, with the errno's text.
std::string bring_loopback_up();

// Polls `done` every `interval` until it holds or `timeout` has passed; returns
// its last answer. For state the broker or a child reaches asynchronously.
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout = std::chrono::seconds(5),
                std::chrono::milliseconds interval = std::chrono::milliseconds(10));

// ---------------------------------------------------------------------------
// Files, descriptors, addresses

// The whole file ("" when it cannot be read).
std::string read_file(const std::string& path);
// Everything up to end of file (EINTR retried; stops at the first error).
std::string read_all(int fd);
// The inode of what fd refers to (a socket's identity), or 0 if fstat fails.
std::uint64_t inode_of(int fd);

// 127.0.0.1:port unless another (host-order) IPv4 address is given.
sockaddr_in ipv4_address(std::uint16_t port, std::uint32_t host_address = INADDR_LOOPBACK);
// A Unix path address; the full sizeof(sockaddr_un) is its length.
sockaddr_un unix_address(const std::string& path);
// An abstract Unix address ("name" without its leading NUL) and the exact
// length bind/connect must get: the name has no terminating NUL.
struct AbstractAddress {
  sockaddr_un address{};
  socklen_t length = 0;
  [[nodiscard]] const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&address); }
};
AbstractAddress abstract_address(const std::string& name);

// A SOCK_SEQPACKET connection to a broker's control socket; empty (errno set)
// when connect(2) fails.
sockbroker::UniqueFd connect_control(const std::string& control);

// Binds a fresh TCP socket of this process to address:port with the options
// given: 0 or the errno of the call that failed. The bound socket goes to
// *bound when asked for (to listen on it), else is closed.
struct Reuse {
  bool addr = false;  // SO_REUSEADDR
  bool port = false;  // SO_REUSEPORT
};
int bind_tcp(std::uint32_t host_address, std::uint16_t port, Reuse reuse = {}, sockbroker::UniqueFd* bound = nullptr);

// A 0755 temporary directory removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] std::string file(const std::string& name) const { return path_ + "/" + name; }
  void write(const std::string& name, const std::string& content) const;

 private:
  std::string path_;
};

// The programs under test, copied where uid 65534 can execute them (the build
// tree may sit under a directory only root can enter).
struct Programs {
  std::string sockbrokerd = SOCKBROKERD_PATH;
  std::string sockbroker;
  std::string demo_httpd;
  std::string self;  // this test binary: its --probe-listen-fds mode
};
[[nodiscard]] const Programs& programs();

// Sets an environment variable for the brokers this test starts (they inherit
// the test's environment), restoring the old state on destruction.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// A running sockbrokerd, stopped (SIGTERM) on destruction.
class Broker {
 public:
  // Writes policy_toml to dir/policy.toml, starts the broker with
  // --control dir/control.sock --audit dir/audit.log and waits until it accepts.
  // handed: descriptors passed as systemd passes them (at 3.., LISTEN_FDS,
  // LISTEN_FDNAMES, LISTEN_PID = the broker's pid), in this order.
  // output: its stdout and stderr instead of dir/broker.log (log() is then
  // empty), e.g. a socket as journald's stream is under systemd.
  static std::optional<Broker> start(const TempDir& dir, const std::string& policy_toml,
                                     const std::vector<std::string>& extra_args = {},
                                     const std::vector<std::pair<std::string, int>>& handed = {},
                                     const std::string& binary = SOCKBROKERD_PATH, int output = -1);
  Broker(Broker&& other) noexcept;
  Broker& operator=(Broker&&) = delete;
  ~Broker();

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] const std::string& control() const { return control_; }
  [[nodiscard]] std::string log() const;  // what it printed on stderr
  // Waits (up to `timeout`) until the log contains `needle`, e.g. "ready on",
  // which the broker prints once it has confined itself.
  [[nodiscard]] bool wait_for_log(const std::string& needle,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;

  // Descriptors the broker holds right now (/proc/PID/fd).
  [[nodiscard]] int fd_count() const;
  // The count once connections already closed by their clients are gone: the
  // baseline a test compares with.
  [[nodiscard]] int settled_fd_count() const;
  // "fd -> target" lines, for failure messages.
  [[nodiscard]] std::string fd_listing() const;
  // Waits (up to 5 s) until the broker holds `expected` descriptors; returns the last count.
  int wait_for_fd_count(int expected) const;

  // The audit events so far, parsed.
  [[nodiscard]] std::vector<nlohmann::json> audit_events() const;
  // Events of one kind; waits up to 2 s for at least `at_least` of them.
  [[nodiscard]] std::vector<nlohmann::json> wait_for_events(const std::string& event, std::size_t at_least = 1) const;

  // SIGTERM and wait; returns the exit status (or 128 + signal).
  int stop();
  // SIGKILL and wait: a crash.
  void kill();
  // Waits for it to exit by itself (up to `timeout`); its status, or -1.
  int wait_exit(std::chrono::milliseconds timeout);

 private:
  Broker(pid_t pid, std::string control, std::string audit, std::string log)
      : pid_(pid), control_(std::move(control)), audit_(std::move(audit)), log_(std::move(log)) {}
  pid_t pid_ = -1;
  std::string control_, audit_, log_;
};

// Starts sockbrokerd and returns its exit status (for start-up failures).
int run_broker_to_exit(const TempDir& dir, const std::vector<std::string>& args, std::string* output = nullptr);

struct ChildResult {
  int exit_code = -1;  // -1 if killed by a signal
  int signal = 0;
  std::string output;  // what the child wrote to `report` (fn) or stdout+stderr (command)
};

// Who a child becomes, set up while it is still root: it joins the cgroup
// (if any), sets its supplementary groups, then its gid and uid. A setup step
// that fails is reported ("setup: setuid: ...") and the child exits 100.
struct ChildSetup {
  uid_t uid = kNobody;
  gid_t gid = kNogroup;
  std::vector<gid_t> groups;  // supplementary groups: none unless given
  std::string cgroup_procs;   // a cgroup.procs file to join first, if any
};

// A forked child that becomes `setup` and runs fn, whose return value is its
// exit status, while the test goes on. fn may write diagnostics to report_fd.
// Killed and reaped on destruction unless waited for; SIGKILLed if the test
// process dies, and by SIGALRM after SOCKBROKER_TEST_CHILD_TIMEOUT (60 s).
class Child {
 public:
  Child(const ChildSetup& setup, const std::function<int(int report_fd)>& fn);
  Child(uid_t uid, gid_t gid, const std::function<int(int report_fd)>& fn) : Child(ChildSetup{uid, gid, {}, {}}, fn) {}
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child();
  [[nodiscard]] pid_t pid() const { return pid_; }
  // Whether it has exited, without reaping it (wait() still reports how).
  [[nodiscard]] bool exited() const;
  // Reads what it reported until it exits, then reaps it.
  ChildResult wait();

 private:
  pid_t pid_ = -1;
  sockbroker::UniqueFd report_;
};

// Child(...).wait(): runs fn in a child that is `setup` (or uid/gid with no
// supplementary groups) and returns how it ended.
ChildResult run_as(const ChildSetup& setup, const std::function<int(int report_fd)>& fn);
inline ChildResult run_as(uid_t uid, gid_t gid, const std::function<int(int report_fd)>& fn) {
  return run_as(ChildSetup{uid, gid, {}, {}}, fn);
}
inline ChildResult run_as_nobody(const std::function<int(int report_fd)>& fn) { return run_as(kNobody, kNogroup, fn); }

// A one-byte signal between the test and its children (both ends close-on-exec).
struct Pipe {
  sockbroker::UniqueFd read, write;
  Pipe();
};
void notify(const Pipe& pipe);
// Whether a byte came within timeout_ms (and consumes it).
bool await(const Pipe& pipe, int timeout_ms = 30000);

// Forks and execs argv as uid/gid, capturing stdout and stderr together.
ChildResult run_command_as(uid_t uid, gid_t gid, const std::vector<std::string>& argv,
                           const std::vector<std::string>& extra_env = {});

// A child started in the background (a service), killed on destruction.
class Background {
 public:
  Background(uid_t uid, gid_t gid, const std::vector<std::string>& argv);
  ~Background();
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
  int wait();  // exit status, or 128 + signal
  // After wait(): the signal that killed it, 0 if it exited (an exit status
  // of 128 + N and death by signal N look alike in wait()'s answer).
  [[nodiscard]] int killed_by() const noexcept { return killed_by_; }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }  // -1 once waited for
  [[nodiscard]] std::string output() const;  // stdout+stderr so far (after wait: all)
  // Waits (up to `timeout`) until its output contains `needle`, e.g. the
  // "ready" an --echo-server worker prints once it holds its socket.
  [[nodiscard]] bool wait_for_output(const std::string& needle,
                                     std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;

 private:
  pid_t pid_ = -1;
  int killed_by_ = 0;
  std::string output_path_;
  TempDir dir_;
};

// Writes a formatted line to report_fd (child side).
void report(int report_fd, const std::string& line);

// `sockbroker --control <the broker's> args...` as uid/gid, stdout and stderr together.
ChildResult cli_as(uid_t uid, gid_t gid, const Broker& broker, const std::vector<std::string>& args);
inline ChildResult cli_as_root(const Broker& broker, const std::vector<std::string>& args) {
  return cli_as(0, 0, broker, args);
}
inline ChildResult cli_as_nobody(const Broker& broker, const std::vector<std::string>& args) {
  return cli_as(kNobody, kNogroup, broker, args);
}

// ---------------------------------------------------------------------------
// Grants, asked for in a child: the lease ends when the child exits, so the
// test process itself never holds one (a live holder the broker rightly keeps).

// The outcome of one acquire made in a child.
struct Acquired {
  bool granted = false;
  int code = 0;          // SOCKBROKER_E_* when not granted
  std::string message;   // the broker's explanation, or what went wrong in the child
  int family = 0;        // of the grant, as the broker described it
  std::string address;
  nlohmann::json probe;  // what the probe read on the granted descriptor
};

// Runs in the child on the granted descriptor; what it returns comes back as
// Acquired::probe.
using GrantProbe = std::function<nlohmann::json(int fd)>;

// Acquires `name` in a child that is `setup` and runs `probe` there.
Acquired acquire_as(const ChildSetup& setup, const Broker& broker, const std::string& name, const GrantProbe& probe = {});
inline Acquired acquire_as_nobody(const Broker& broker, const std::string& name, const GrantProbe& probe = {}) {
  return acquire_as(ChildSetup{}, broker, name, probe);
}

// Whether the broker grants `name` to uid/gid, asked in a child that then
// exits; a failure names the socket, the uid and the broker's answer.
::testing::AssertionResult grants(const Broker& broker, const std::string& name, uid_t uid = kNobody,
                                  gid_t gid = kNogroup);

// Accepts one stream connection on `listener`, reads what the client sends
// and answers "pong:" + it. Returns "" or what failed; the client's address
// goes to *peer when asked for.
std::string answer_pong(int listener, sockaddr_storage* peer = nullptr);

// One TCP or UDP exchange with 127.0.0.1:port from this (root) process.
std::string tcp_exchange(std::uint16_t port, const std::string& send, int timeout_ms = 5000);
std::string udp_exchange(std::uint16_t port, const std::string& send, int timeout_ms = 5000);
std::string unix_exchange(const std::string& path, const std::string& send, int timeout_ms = 5000);

// A worker serving `socket` through `sockbroker run --on-revoke ON_REVOKE`, as
// uid 65534, answering every connection with "TAG\n" (--echo-server): it
// prints "ready" once it holds its socket.
std::unique_ptr<Background> start_worker(const Broker& broker, const std::string& socket, const std::string& tag,
                                         const std::string& on_revoke = "term");

// As uid 65534 in a child that exits at once: the inode of the kernel socket
// `name` is granted as (the socket's identity across restarts), 0 if refused.
std::uint64_t inode_of_granted(const Broker& broker, const std::string& name);

}  // namespace sbtest

namespace sbtest {

// The fixture of the integration tests: root (a skip otherwise, or a failure
// where SOCKBROKER_TEST_REQUIRE_ROOT=1 forbids skipping), then this process's
// private network namespace. A file names its suites after it:
// `using Netns = sbtest::BrokerTest;`.
class BrokerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SOCKBROKER_REQUIRE_ROOT();
    enter_private_netns();
  }
};

}  // namespace sbtest

// Tests of suites that cannot take the fixture's name (it would hide a type
// of the same name) start with this instead.
#define SBTEST_PREPARE()         \
  do {                           \
    SOCKBROKER_REQUIRE_ROOT();   \
    ::sbtest::enter_private_netns(); \
  } while (0)
