// Item 8: policies of 100, 1,000 and 10,000 sockets: `sockbroker check`, the
// broker's start-up (fork to first answered request), a reload of the unchanged
// 10,000-socket policy (which must rebind nothing: the broker's socket inodes
// are compared before and after), and the broker's RSS idle and with 1,000
// connected clients.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sockbroker/client.hpp>

#include <algorithm>

#include "bench_env.hpp"
#include "latency_samples.hpp"

namespace sbbench {
namespace {

constexpr int kCheckRuns = 7;
constexpr int kStartRuns = 3;
constexpr int kReloadRuns = 5;

void run_to_exit(std::vector<std::string> args) {
  pid_t pid = spawn([&] {
    int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null < 0 || ::dup2(null, 1) < 0 || ::dup2(null, 2) < 0) return 126;
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    return 127;
  });
  reap(pid, args[0]);
}

void BM_Scale_Check(benchmark::State& state) {
  unpin_self();
  TempDir dir;
  dir.write("policy.toml", scale_policy(static_cast<int>(state.range(0))));
  Samples samples;
  for (auto _ : state) {
    for (int i = 0; i < kCheckRuns; ++i) {
      auto t0 = now_ns();
      run_to_exit({sockbroker_path(), "check", "--policy", dir.file("policy.toml")});
      samples.add_ns(now_ns() - t0);
    }
  }
  samples.report(state);
}

void BM_Scale_Startup(benchmark::State& state) {
  unpin_self();
  Samples samples;
  for (auto _ : state) {
    for (int i = 0; i < kStartRuns; ++i) {
      TempDir dir;
      Broker broker(dir, scale_policy(static_cast<int>(state.range(0))));
      samples.add(broker.startup());
    }
  }
  samples.report(state);
}

void BM_Scale_ReloadUnchanged(benchmark::State& state) {
  unpin_self();
  TempDir dir;
  Broker broker(dir, scale_policy(static_cast<int>(state.range(0))));
  auto before = broker.socket_inodes();
  Samples samples;
  for (auto _ : state) {
    for (int i = 0; i < kReloadRuns; ++i) {
      auto client = sockbroker::Client::connect(broker.control());
      if (!client) {
        errno = 0;
        die("connect: " + client.error().message);
      }
      auto t0 = now_ns();
      auto outcome = client->reload();
      samples.add_ns(now_ns() - t0);
      if (!outcome || !outcome->ok) {
        errno = 0;
        die("reload refused: " + (outcome ? outcome->message : outcome.error().message));
      }
    }
  }
  auto after = broker.socket_inodes();
  std::vector<std::uint64_t> fresh;
  std::set_difference(after.begin(), after.end(), before.begin(), before.end(), std::back_inserter(fresh));
  // Sockets the reload made anew: must be 0 (the control connections above are closed by now).
  state.counters["rebound"] = static_cast<double>(fresh.size());
  samples.report(state);
}

void BM_Scale_BrokerRss(benchmark::State& state) {
  unpin_self();
  TempDir dir;
  // Not bench_policy(): the shared broker may hold its ports already.
  Broker broker(dir, scale_policy(1));
  long idle = 0, loaded = 0;
  const int clients = static_cast<int>(state.range(0));
  for (auto _ : state) {
    idle = broker.rss_kib();
    // Connected, identified and served once each: a session per client. The
    // broker drops idle sessions after request_timeout_ms (2 s), so measure at once.
    std::vector<sockbroker::Client> held;
    held.reserve(static_cast<std::size_t>(clients));
    as_nobody([&] {
      for (int i = 0; i < clients; ++i) {
        auto client = sockbroker::Client::connect(broker.control());
        if (!client) {
          errno = 0;
          die("connect client " + std::to_string(i) + ": " + client.error().message);
        }
        if (auto grant = client->acquire("bench0"); !grant) {
          errno = 0;
          die("acquire bench0 for client " + std::to_string(i) + ": " + grant.error().message);
        }
        held.push_back(std::move(*client));
      }
    });
    loaded = broker.rss_kib();
  }
  state.counters["idle_kib"] = static_cast<double>(idle);
  state.counters["loaded_kib"] = static_cast<double>(loaded);
}

BENCHMARK(BM_Scale_Check)->Arg(100)->Arg(1000)->Arg(10000)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Scale_Startup)->Arg(100)->Arg(1000)->Arg(10000)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Scale_ReloadUnchanged)->Arg(10000)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Scale_BrokerRss)->Arg(1000)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sbbench
