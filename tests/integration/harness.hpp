// The integration harness: a private network namespace per test process, the
// real sockbrokerd started from a policy the test writes, and clients forked
// and dropped to uid/gid 65534 (nobody/nogroup). No mocks of the kernel.
#pragma once

#include <sys/types.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "require_root.hpp"

namespace sbtest {

inline constexpr uid_t kNobody = 65534;
inline constexpr gid_t kNogroup = 65534;

// Moves this test process into a fresh network namespace with "lo" up, once.
// Every test binary run by ctest is one test, so namespaces never leak across tests.
void enter_private_netns();

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

// A running sockbrokerd, stopped (SIGTERM) on destruction.
class Broker {
 public:
  // Writes policy_toml to dir/policy.toml, starts the broker with
  // --control dir/control.sock --audit dir/audit.log and waits until it accepts.
  static std::optional<Broker> start(const TempDir& dir, const std::string& policy_toml,
                                     const std::vector<std::string>& extra_args = {});
  Broker(Broker&& other) noexcept;
  Broker& operator=(Broker&&) = delete;
  ~Broker();

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] const std::string& control() const { return control_; }
  [[nodiscard]] std::string log() const;  // what it printed on stderr

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

// Forks; the child drops to uid/gid (no supplementary groups) and runs fn,
// whose return value is its exit status. fn may write diagnostics to report_fd.
ChildResult run_as(uid_t uid, gid_t gid, const std::function<int(int report_fd)>& fn);
inline ChildResult run_as_nobody(const std::function<int(int report_fd)>& fn) { return run_as(kNobody, kNogroup, fn); }

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
  [[nodiscard]] std::string output() const;  // stdout+stderr so far (after wait: all)

 private:
  pid_t pid_ = -1;
  std::string output_path_;
  TempDir dir_;
};

// Writes a formatted line to report_fd (child side).
void report(int report_fd, const std::string& line);

// One TCP or UDP exchange with 127.0.0.1:port from this (root) process.
std::string tcp_exchange(std::uint16_t port, const std::string& send, int timeout_ms = 5000);
std::string udp_exchange(std::uint16_t port, const std::string& send, int timeout_ms = 5000);
std::string unix_exchange(const std::string& path, const std::string& send, int timeout_ms = 5000);

}  // namespace sbtest

// Every integration test starts with this: root check, then a private netns.
#define SBTEST_PREPARE()         \
  do {                           \
    SOCKBROKER_REQUIRE_ROOT();   \
    ::sbtest::enter_private_netns(); \
  } while (0)
