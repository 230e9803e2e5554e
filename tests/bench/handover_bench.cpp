// Item 10 (#17): a broker start-up that adopts 10,000 sockets handed over as
// systemd hands them (LISTEN_FDS/LISTEN_FDNAMES, "sock.<id>.<name>") against
// one that binds them itself, and an upgrade in place (SIGUSR2) of a broker
// serving 10,000 sockets to 1,000 holder processes.
//
// Both start-ups are timed from fork to the first answered status request and
// run alternately in one benchmark, so that the machine's load falls on both
// sides of the ratio. The upgrade is timed from kill(SIGUSR2) to the first
// status answer that counts it; a status request answered by a broker at rest
// is measured too, since that answer is part of every figure here.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sockbroker/client.hpp>

#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

#include "bench_env.hpp"
#include "latency_samples.hpp"

extern char** environ;

namespace sbbench {
namespace {

constexpr int kSockets = 10000;
constexpr int kHolders = 1000;
constexpr int kFirstPort = 20000;
constexpr int kStartPairs = 3;  // bind and adopt start-ups, alternately
constexpr int kUpgrades = 3;    // on one broker, its holders kept throughout
constexpr int kStatusRuns = 5;
// execve(2) refuses any one argument or environment string longer than this
// (MAX_ARG_STRLEN, 32 pages), terminating NUL included.
constexpr std::size_t kMaxArgStrlen = 32 * 4096;

// The shortest distinct socket names ([0-9A-Za-z_-], 1-3 characters): what
// LISTEN_FDNAMES carries for 10,000 sockets has to fit in kMaxArgStrlen.
std::string short_name(int i) {
  static constexpr char kDigits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-";
  std::string name;
  if (i < 64) return std::string(1, kDigits[i]);
  i -= 64;
  if (i < 64 * 64) return std::string{kDigits[i / 64], kDigits[i % 64]};
  i -= 64 * 64;
  return std::string{kDigits[i / 4096], kDigits[(i / 64) % 64], kDigits[i % 64]};
}

std::string handover_policy() {
  std::ostringstream out;
  out << "[broker]\nmax_clients = 4096\nmax_clients_per_uid = 4096\n";
  for (int i = 0; i < kSockets; ++i) {
    out << "\n[socket.\"" << short_name(i) << "\"]\nlisten = \"127.0.0.1:" << kFirstPort + i
        << "\"\n\n[[socket.\"" << short_name(i) << "\".allow]]\nuser = \"nobody\"\n";
  }
  return out.str();
}

// What a status request costs when answered: connect + status(), or nothing.
bool status_answered(const std::string& control, std::uint64_t* upgrades = nullptr) {
  auto client = sockbroker::Client::connect(control);
  if (!client) return false;
  auto status = client->status();
  if (!status) return false;
  if (upgrades != nullptr) *upgrades = status->upgrades;
  return true;
}

// The sockets systemd's store would hold: bound and listening as the broker
// binds them (SO_REUSEADDR), in ascending descriptor order (start_broker's
// child relies on it).
std::vector<int> bind_handed_sockets() {
  std::vector<int> fds;
  fds.reserve(kSockets);
  for (int i = 0; i < kSockets; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) die("SO_REUSEADDR");
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(kFirstPort + i));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      die("bind 127.0.0.1:" + std::to_string(kFirstPort + i));
    }
    if (::listen(fd, SOMAXCONN) != 0) die("listen");
    if (!fds.empty() && fd <= fds.back()) {
      errno = 0;
      die("socket() returned descriptors out of order");
    }
    fds.push_back(fd);
  }
  return fds;
}

struct Started {
  pid_t pid = -1;
  std::int64_t ns = 0;  // fork to first answered status
};

// Starts sockbrokerd on dir's policy; with handed sockets, passed as systemd
// passes them. Returns once a status request is answered.
Started start_broker(const TempDir& dir, const std::vector<int>& handed) {
  const std::string control = dir.file("control.sock");
  std::vector<std::string> args{sockbrokerd_path(), "--policy",    dir.file("policy.toml"), "--control", control,
                                "--audit",          dir.file("audit.log"), "--log-level", "warn"};
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view var = *e;
    if (var.starts_with("LISTEN_") || var.starts_with("NOTIFY_SOCKET=")) continue;
    env.emplace_back(var);
  }
  std::string listen_pid = "LISTEN_PID=";
  if (!handed.empty()) {
    env.push_back("LISTEN_FDS=" + std::to_string(handed.size()));
    std::string names = "LISTEN_FDNAMES=";
    // Every id the same: 10,000 distinct ids do not fit (docs/PERFORMANCE.md, item 10).
    for (int i = 0; i < kSockets; ++i) names += (i != 0 ? ":sock.1." : "sock.1.") + short_name(i);
    if (names.size() + 1 > kMaxArgStrlen) {
      errno = E2BIG;
      die("LISTEN_FDNAMES of " + std::to_string(names.size()) + " bytes");
    }
    env.push_back(std::move(names));
  }
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  char pid_var[32] = {};
  if (!handed.empty()) envp.push_back(pid_var);
  envp.push_back(nullptr);
  const std::string log = dir.file("broker.log");

  Started out;
  const std::int64_t t0 = now_ns();
  out.pid = ::fork();
  if (out.pid < 0) die("fork");
  if (out.pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || ::dup2(fd, 1) < 0 || ::dup2(fd, 2) < 0) ::_exit(126);
    // As systemd: the n-th item at 3 + n, not close-on-exec. The sources
    // ascend and are all >= 3, so handed[j] >= 3 + j: the target 3 + i is
    // never a source still to be moved (j > i), only one moved already or not
    // a source at all. No room to park them elsewhere: RLIMIT_NOFILE may be
    // 20,000 (a container's hard limit), not twice 10,000.
    for (std::size_t i = 0; i < handed.size(); ++i) {
      const int target = 3 + static_cast<int>(i);
      const bool moved = handed[i] == target ? ::fcntl(target, F_SETFD, 0) == 0 : ::dup2(handed[i], target) == target;
      if (!moved) ::_exit(126);
    }
    ::syscall(SYS_close_range, 3U + static_cast<unsigned>(handed.size()), ~0U, 0U);
    std::snprintf(pid_var, sizeof pid_var, "LISTEN_PID=%d", static_cast<int>(::getpid()));
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  const std::int64_t deadline = t0 + std::int64_t{60} * 1000000000;
  while (now_ns() < deadline) {
    if (status_answered(control)) {
      out.ns = now_ns() - t0;
      return out;
    }
    int status = 0;
    if (::waitpid(out.pid, &status, WNOHANG) == out.pid) {
      std::ifstream in(log);
      std::cerr << in.rdbuf();
      errno = 0;
      die("sockbrokerd exited during start-up (its log is above)");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  errno = ETIMEDOUT;
  die("sockbrokerd did not answer within 60 s");
}

void stop_broker(pid_t pid) {
  ::kill(pid, SIGTERM);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

// How many of the audit trail's bind events say "adopted" (each socket has one).
int adopted_in_audit(const TempDir& dir) {
  std::ifstream in(dir.file("audit.log"));
  int adopted = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find("\"adopted\":true") != std::string::npos) ++adopted;
  }
  return adopted;
}

void BM_Handover_Startup(benchmark::State& state) {
  unpin_self();
  const std::string policy = handover_policy();
  Samples bind_samples, adopt_samples;
  for (auto _ : state) {
    for (int k = 0; k < 2 * kStartPairs; ++k) {
      // bind, adopt, adopt, bind, bind, adopt: neither always goes first.
      const bool adopt = (k % 4 == 1 || k % 4 == 2);
      TempDir dir;
      dir.write("policy.toml", policy);
      std::vector<int> handed;
      if (adopt) handed = bind_handed_sockets();
      Started started = start_broker(dir, handed);
      (adopt ? adopt_samples : bind_samples).add_ns(started.ns);
      stop_broker(started.pid);
      // Proof of the path taken, read after the broker stopped (its audit is complete).
      if (const int adopted = adopted_in_audit(dir); adopted != (adopt ? kSockets : 0)) {
        errno = 0;
        die("the broker adopted " + std::to_string(adopted) + " socket(s) in the " + (adopt ? "adopt" : "bind") +
            " case");
      }
      for (int fd : handed) ::close(fd);
    }
  }
  state.counters["bind_p50_us"] = bind_samples.percentile_us(0.50);
  state.counters["bind_max_us"] = bind_samples.percentile_us(1.0);
  state.counters["adopt_p50_us"] = adopt_samples.percentile_us(0.50);
  state.counters["adopt_max_us"] = adopt_samples.percentile_us(1.0);
  // What LISTEN_FDNAMES is when systemd's store hands back what the broker
  // stored: "s<id>" per socket (ids 1..10,000), plus "state" and "control".
  std::size_t own = std::strlen("LISTEN_FDNAMES=state:control") + 1;
  for (int i = 0; i < kSockets; ++i) own += 1 + 1 + std::to_string(i + 1).size();
  state.counters["fdnames_store_bytes"] = static_cast<double>(own);
  state.counters["max_arg_strlen"] = static_cast<double>(kMaxArgStrlen);
}

void BM_Handover_Upgrade(benchmark::State& state) {
  unpin_self();
  const int holders = static_cast<int>(state.range(0));
  TempDir dir;
  dir.write("policy.toml", handover_policy());
  Started broker = start_broker(dir, {});
  const std::string control = dir.file("control.sock");

  // The holders: each acquires one socket as nobody, says so, and waits for
  // the benchmark to close `hold` (or to die: PR_SET_PDEATHSIG).
  int ready[2], hold[2];
  if (::pipe2(ready, O_CLOEXEC) != 0 || ::pipe2(hold, O_CLOEXEC) != 0) die("pipe2");
  std::vector<pid_t> children;
  children.reserve(static_cast<std::size_t>(holders));
  for (int i = 0; i < holders; ++i) {
    children.push_back(spawn([&] {
      ::close(ready[0]);
      ::close(hold[1]);
      become_nobody_effective();
      std::optional<sockbroker::Grant> grant;
      {
        // The connection closes at the end of this block; the lease is the
        // process's until it exits.
        auto client = sockbroker::Client::connect(control);
        if (!client) return 1;
        auto got = client->acquire(short_name(i * (kSockets / holders)));
        if (!got) return 2;
        grant = std::move(*got);
      }
      char byte = 1;
      if (::write(ready[1], &byte, 1) != 1) return 3;
      ssize_t n;
      while ((n = ::read(hold[0], &byte, 1)) < 0 && errno == EINTR) {
      }
      return 0;
    }));
  }
  ::close(ready[1]);
  ::close(hold[0]);
  for (int i = 0; i < holders; ++i) {
    char byte = 0;
    if (::read(ready[0], &byte, 1) != 1) die("holder " + std::to_string(i) + " did not acquire");
  }
  ::close(ready[0]);

  Samples status_samples, upgrade_samples;
  for (auto _ : state) {
    for (int i = 0; i < kStatusRuns; ++i) {
      const std::int64_t t0 = now_ns();
      if (!status_answered(control)) die("status");
      status_samples.add_ns(now_ns() - t0);
    }
    for (int k = 1; k <= kUpgrades; ++k) {
      const std::int64_t t0 = now_ns();
      if (::kill(broker.pid, SIGUSR2) != 0) die("kill SIGUSR2");
      std::uint64_t upgrades = 0;
      const std::int64_t deadline = t0 + std::int64_t{60} * 1000000000;
      while (!(status_answered(control, &upgrades) && upgrades == static_cast<std::uint64_t>(k))) {
        if (now_ns() > deadline) {
          errno = ETIMEDOUT;
          die("no status with upgrades == " + std::to_string(k));
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      upgrade_samples.add_ns(now_ns() - t0);
    }
  }
  // The holders' leases survived every upgrade: the last image adopted them.
  std::uint64_t granted = 0;
  if (auto client = sockbroker::Client::connect(control)) {
    if (auto status = client->status()) {
      for (const auto& s : status->sockets) granted += s.holders;
    }
  }
  state.counters["holders_after"] = static_cast<double>(granted);
  ::close(hold[1]);
  for (pid_t pid : children) reap(pid, "holder");
  stop_broker(broker.pid);
  state.counters["status_p50_us"] = status_samples.percentile_us(0.50);
  state.counters["p50_us"] = upgrade_samples.percentile_us(0.50);
  state.counters["max_us"] = upgrade_samples.percentile_us(1.0);
  state.counters["holders"] = holders;
  state.counters["sockets"] = kSockets;
}

BENCHMARK(BM_Handover_Startup)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Handover_Upgrade)->Arg(kHolders)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sbbench
