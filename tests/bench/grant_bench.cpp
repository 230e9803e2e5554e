// Items 1-3 of the suite: one grant against the round trip that is its limit.
//
// Every benchmark runs one Google Benchmark iteration and takes its own
// per-request samples (Google Benchmark reports means only); the counters
// p50_us and p99_us are what scripts/bench.sh tabulates. The client is on CPU 0;
// the broker or the baseline peer on CPU 0 (same_cpu) or CPU 1 (split_cpu).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sockbroker/client.hpp>

#include <cstring>

#include "bench_env.hpp"
#include "fd_peer.hpp"
#include "shared_broker.hpp"

namespace sbbench {
namespace {

constexpr int kSamples = 2000;  // per repetition (kRepetitions)
constexpr int kWarmup = 500;
// reuse_port members live until their holder exits, and each one lengthens the
// kernel's bind-conflict scan of the port; a holder process makes this many
// grants and exits, as a worker would, so the group never grows without bound.
constexpr int kReuseportBatch = 200;

Placement placement_of(const benchmark::State& state) {
  return state.range(0) == 0 ? Placement::same_cpu : Placement::split_cpu;
}

void label(benchmark::State& state) { state.SetLabel(placement_name(placement_of(state))); }

sockbroker::Client connect_as_nobody(const std::string& control) {
  auto client = as_nobody([&] { return sockbroker::Client::connect(control); });
  if (!client) {
    errno = 0;
    die("connect to the broker: " + client.error().message);
  }
  return std::move(*client);
}

void acquire_or_die(sockbroker::Client& client, const char* name) {
  auto grant = client.acquire(name);
  if (!grant) {
    errno = 0;
    die(std::string("acquire ") + name + ": " + grant.error().message);
  }
}

// Runs fn(report) in a child that writes its samples (int64 ns each) to report.
template <class Fn>
void collect_from_child(Samples& samples, Fn&& fn) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) die("pipe2");
  pid_t pid = spawn([&] {
    ::close(pipe_fds[0]);
    return fn(pipe_fds[1]);
  });
  ::close(pipe_fds[1]);
  std::int64_t ns = 0;
  std::size_t have = 0;
  char* bytes = reinterpret_cast<char*>(&ns);
  for (;;) {
    ssize_t n = ::read(pipe_fds[0], bytes + have, sizeof ns - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("read samples");
    if (n == 0) break;
    have += static_cast<std::size_t>(n);
    if (have == sizeof ns) {
      samples.add_ns(ns);
      have = 0;
    }
  }
  ::close(pipe_fds[0]);
  reap(pid, "benchmark child");
}

void write_samples(int fd, const std::vector<std::int64_t>& ns) {
  const char* p = reinterpret_cast<const char*>(ns.data());
  std::size_t left = ns.size() * sizeof(std::int64_t);
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("write samples");
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

// ---- 1. shared socket over a kept-open connection ----

void BM_Limit_RoundTripFd(benchmark::State& state) {
  label(state);
  pin_self(0);
  PairPeer peer = start_pair_peer(PeerWork::shared, peer_cpu(placement_of(state)));
  Samples samples(kSamples);
  for (auto _ : state) {
    for (int i = 0; i < kWarmup; ++i) round_trip(peer.fd);
    for (int i = 0; i < kSamples; ++i) {
      auto t0 = now_ns();
      round_trip(peer.fd);
      samples.add_ns(now_ns() - t0);
    }
  }
  stop_pair_peer(peer);
  samples.report(state);
}

void BM_Grant_Shared(benchmark::State& state) {
  label(state);
  Broker& broker = shared_broker();
  pin_self(0);
  pin(broker.pid(), peer_cpu(placement_of(state)));
  auto client = connect_as_nobody(broker.control());
  Samples samples(kSamples);
  for (auto _ : state) {
    for (int i = 0; i < kWarmup; ++i) acquire_or_die(client, "web");
    for (int i = 0; i < kSamples; ++i) {
      auto t0 = now_ns();
      acquire_or_die(client, "web");  // the Grant's descriptor is closed inside, as a round trip's is
      samples.add_ns(now_ns() - t0);
    }
  }
  samples.report(state);
}

// ---- 2. a new reuse_port member ----

void BM_Limit_RoundTripReuseportMember(benchmark::State& state) {
  label(state);
  pin_self(0);
  const int cpu = peer_cpu(placement_of(state));
  Samples samples(kSamples);
  for (auto _ : state) {
    for (int done = 0; done < kSamples; done += kReuseportBatch) {
      collect_from_child(samples, [&](int report) {
        PairPeer peer = start_pair_peer(PeerWork::reuseport, cpu);
        std::vector<std::int64_t> ns;
        ns.reserve(kReuseportBatch);
        for (int i = 0; i < kReuseportBatch; ++i) {
          auto t0 = now_ns();
          round_trip(peer.fd);
          ns.push_back(now_ns() - t0);
        }
        stop_pair_peer(peer);
        write_samples(report, ns);
        return 0;
      });
    }
  }
  samples.report(state);
}

void BM_Grant_ReuseportMember(benchmark::State& state) {
  label(state);
  Broker& broker = shared_broker();
  pin_self(0);
  pin(broker.pid(), peer_cpu(placement_of(state)));
  Samples samples(kSamples);
  for (auto _ : state) {
    for (int done = 0; done < kSamples; done += kReuseportBatch) {
      collect_from_child(samples, [&](int report) {
        // The holder is this child: its members are released when it exits.
        auto client = connect_as_nobody(broker.control());
        std::vector<std::int64_t> ns;
        ns.reserve(kReuseportBatch);
        for (int i = 0; i < kReuseportBatch; ++i) {
          auto t0 = now_ns();
          acquire_or_die(client, "workers");
          ns.push_back(now_ns() - t0);
        }
        write_samples(report, ns);
        return 0;
      });
    }
  }
  samples.report(state);
}

// ---- 3. what a service does once: connect + acquire + close ----

void BM_Limit_ConnectRoundTripClose(benchmark::State& state) {
  label(state);
  pin_self(0);
  TempDir dir;
  std::string path = dir.file("peer.sock");
  pid_t peer = start_listening_peer(path, peer_cpu(placement_of(state)));
  Samples samples(kSamples / 2);
  for (auto _ : state) {
    for (int i = 0; i < kWarmup; ++i) connect_round_trip(path);
    for (int i = 0; i < kSamples / 2; ++i) {
      auto t0 = now_ns();
      connect_round_trip(path);
      samples.add_ns(now_ns() - t0);
    }
  }
  ::kill(peer, SIGKILL);
  ::waitpid(peer, nullptr, 0);
  samples.report(state);
}

void BM_Grant_ConnectAcquireClose(benchmark::State& state) {
  label(state);
  Broker& broker = shared_broker();
  pin_self(0);
  pin(broker.pid(), peer_cpu(placement_of(state)));
  Samples samples(kSamples / 2);
  auto once = [&] {
    auto grant = sockbroker::acquire("web", broker.control());
    if (!grant) {
      errno = 0;
      die("acquire web: " + grant.error().message);
    }
  };
  for (auto _ : state) {
    // Each connection is made as nobody: the broker checks the rule every time.
    as_nobody([&] {
      for (int i = 0; i < kWarmup; ++i) once();
      for (int i = 0; i < kSamples / 2; ++i) {
        auto t0 = now_ns();
        once();
        samples.add_ns(now_ns() - t0);
      }
    });
  }
  samples.report(state);
}

// Placement as the argument: 0 same_cpu, 1 split_cpu.
#define SBBENCH_PLACED(fn) \
  BENCHMARK(fn)->Arg(0)->Arg(1)->Iterations(1)->Repetitions(kRepetitions)->Unit(benchmark::kMillisecond)
SBBENCH_PLACED(BM_Limit_RoundTripFd);
SBBENCH_PLACED(BM_Grant_Shared);
SBBENCH_PLACED(BM_Limit_RoundTripReuseportMember);
SBBENCH_PLACED(BM_Grant_ReuseportMember);
SBBENCH_PLACED(BM_Limit_ConnectRoundTripClose);
SBBENCH_PLACED(BM_Grant_ConnectAcquireClose);

}  // namespace
}  // namespace sbbench
