// The benchmark environment: a private network namespace, the real sockbrokerd
// started from a generated policy, CPU placement, the unprivileged identity the
// clients use, and forked children. (The latency samples are latency_samples.hpp's.)
//
// Everything here forks only while the process is single-threaded (Google
// Benchmark runs every benchmark below on the main thread), so no child ever
// inherits a lock held by another thread.
#pragma once

#include <benchmark/benchmark.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace sbbench {

inline constexpr uid_t kNobody = 65534;
inline constexpr gid_t kNogroup = 65534;

// Every row that is a ratio (1, 2, 3, 5) runs its figure and its baseline as
// this many repetitions each, which scripts/bench.sh has Google Benchmark
// interleave (--benchmark_enable_random_interleaving: round k runs the k-th
// repetition of every benchmark, in a random order). A noisy stretch on this
// shared machine then falls on both sides of a ratio instead of on whichever
// ran then, and report.py reads the median over the rounds, which ignores
// noisy rounds while they are fewer than half. Run one after the other, row 1
// same-CPU moved between 1.26x and 1.36x in two runs of the same build.
inline constexpr int kRepetitions = 10;

// Aborts with "what: strerror(errno)": a benchmark whose set-up failed measures nothing.
[[noreturn]] void die(const std::string& what);

// Moves this process into a fresh network namespace with "lo" up.
void enter_private_netns();

// Raises RLIMIT_NOFILE to 65536 (or, where even root may not raise it, to the hard limit), for
// the 10,000-socket broker and the 1,000 connected clients.
void raise_fd_limit();

// Where the two ends of a round trip run: one CPU (every wake-up is a context
// switch on it) or two (every wake-up crosses CPUs: an IPI and an idle exit).
enum class Placement { same_cpu, split_cpu };
[[nodiscard]] const char* placement_name(Placement p);
// Pins every thread of pid (0: this process) to one CPU (-1: every CPU).
void pin(pid_t pid, int cpu);
void pin_self(int cpu);
void unpin_self();
// CPU of the peer for a placement (the client is always on CPU 0).
[[nodiscard]] int peer_cpu(Placement p);

// Runs fn with effective uid/gid 65534 and no supplementary groups, then
// restores root. What the broker sees of a connection (SO_PEERCRED,
// SO_PEERGROUPS) is fixed when it connects, so a connection made inside stays
// "nobody" for the broker for its whole life.
template <class Fn>
auto as_nobody(Fn&& fn);
void become_nobody_effective();
void restore_root_effective();

// A 0755 temporary directory, removed on destruction.
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

// The build tree's programs (compile definitions).
// SOCKBROKERD_PATH, or $SBBENCH_SOCKBROKERD (another build, for a before/after
// run); the CLI likewise, $SBBENCH_SOCKBROKER.
[[nodiscard]] std::string sockbrokerd_path();
[[nodiscard]] std::string sockbroker_path();

// A running sockbrokerd; SIGTERM and reaped on destruction.
class Broker {
 public:
  // Writes policy_toml into dir, starts the broker (audit to a file, as in
  // production) and returns once it answers a request.
  Broker(const TempDir& dir, const std::string& policy_toml);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] const std::string& control() const { return control_; }
  // How long from fork to the first answered request.
  [[nodiscard]] std::chrono::nanoseconds startup() const { return startup_; }
  // VmRSS from /proc/PID/status, in KiB.
  [[nodiscard]] long rss_kib() const;
  // Inodes of the sockets the broker holds ("socket:[N]" links in /proc/PID/fd).
  [[nodiscard]] std::vector<std::uint64_t> socket_inodes() const;

 private:
  pid_t pid_ = -1;
  std::string control_;
  std::chrono::nanoseconds startup_{};
};

// The standard benchmark policy: shared TCP "web" on 127.0.0.1:80 and
// reuse_port "workers" on 127.0.0.1:81, both granted to user nobody by a real
// rule (root would match the matcher's built-in root rule and skip the policy check).
[[nodiscard]] std::string bench_policy();
// n shared TCP sockets bench0..bench{n-1} on 127.0.0.1:10000+i, each granted to nobody.
[[nodiscard]] std::string scale_policy(int sockets);

// Forks a child that runs fn (returning its exit status) and _exits; returns its pid.
template <class Fn>
pid_t spawn(Fn&& fn);
// Waits for a child; aborts the benchmark if it failed.
void reap(pid_t pid, const std::string& what);

// ---- template definitions ----

template <class Fn>
auto as_nobody(Fn&& fn) {
  become_nobody_effective();
  struct Restore {
    ~Restore() { restore_root_effective(); }
  } restore;
  return fn();
}

void child_prologue();

template <class Fn>
pid_t spawn(Fn&& fn) {
  pid_t pid = ::fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    child_prologue();
    int status = fn();
    ::_exit(status);
  }
  return pid;
}

}  // namespace sbbench
