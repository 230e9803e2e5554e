// Items 1-3 of the suite: one grant against the round trip that is its limit.
//
// Every benchmark runs one Google Benchmark iteration and takes its own
// per-request samples (Google Benchmark reports means only); the counters
// p50_us and p99_us are what scripts/bench.sh tabulates. The client is on CPU 0;
// the broker or the baseline peer on CPU 0 (same_cpu) or CPU 1 (split_cpu).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sockbroker/client.hpp>

#include <cstring>

#include "bench_env.hpp"
#include "fd_peer.hpp"
#include "latency_samples.hpp"
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

// ---- 1. shared socket over a kept-open connection ----

// Sockets in the policy of the large-policy variant of row 1: a grant must not
// cost more because the policy names more sockets.
constexpr int kLargePolicy = 10000;

void BM_Limit_RoundTripFd(benchmark::State& state) {
  label(state);
  pin_self(0);
  PairPeer peer = start_pair_peer(PeerWork::shared, peer_cpu(placement_of(state)));
  Samples samples(kSamples);
  for (auto _ : state) time_each(samples, kWarmup, kSamples, [&] { round_trip(peer.fd); });
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
    // The Grant's descriptor is closed inside, as a round trip's is.
    time_each(samples, kWarmup, kSamples, [&] { acquire_or_die(client, "web"); });
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
      samples.add_all(samples_from_child("benchmark child", [&](int report) {
        PairPeer peer = start_pair_peer(PeerWork::reuseport, cpu);
        auto ns = time_each(0, kReuseportBatch, [&] { round_trip(peer.fd); });
        stop_pair_peer(peer);
        write_samples(report, ns);
        return 0;
      }));
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
      samples.add_all(samples_from_child("benchmark child", [&](int report) {
        // The holder is this child: its members are released when it exits.
        auto client = connect_as_nobody(broker.control());
        write_samples(report, time_each(0, kReuseportBatch, [&] { acquire_or_die(client, "workers"); }));
        return 0;
      }));
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
  for (auto _ : state) time_each(samples, kWarmup, kSamples / 2, [&] { connect_round_trip(path); });
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
    as_nobody([&] { time_each(samples, kWarmup, kSamples / 2, once); });
  }
  samples.report(state);
}

// Row 1 against a broker whose policy names kLargePolicy sockets (scale_policy),
// for one in the middle of the table.
void BM_Grant_SharedLargePolicy(benchmark::State& state) {
  label(state);
  TempDir dir;
  Broker broker(dir, scale_policy(kLargePolicy));
  pin_self(0);
  pin(broker.pid(), peer_cpu(placement_of(state)));
  auto client = connect_as_nobody(broker.control());
  const std::string name = "bench" + std::to_string(kLargePolicy / 2);
  Samples samples(kSamples);
  for (auto _ : state) {
    time_each(samples, kWarmup, kSamples, [&] { acquire_or_die(client, name.c_str()); });
  }
  samples.report(state);
}

// Placement as the argument: 0 same_cpu, 1 split_cpu.
#define SBBENCH_PLACED(fn) \
  BENCHMARK(fn)->Arg(0)->Arg(1)->Iterations(1)->Repetitions(kRepetitions)->Unit(benchmark::kMillisecond)
SBBENCH_PLACED(BM_Limit_RoundTripFd);
SBBENCH_PLACED(BM_Grant_Shared);
SBBENCH_PLACED(BM_Grant_SharedLargePolicy);
SBBENCH_PLACED(BM_Limit_RoundTripReuseportMember);
SBBENCH_PLACED(BM_Grant_ReuseportMember);
SBBENCH_PLACED(BM_Limit_ConnectRoundTripClose);
SBBENCH_PLACED(BM_Grant_ConnectAcquireClose);

}  // namespace
}  // namespace sbbench
