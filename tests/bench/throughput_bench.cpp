// Item 5: aggregate grants per second with 1, 4, 16 and 64 concurrent clients,
// each a separate uid-65534 process with a kept-open connection, against the
// same client count driving a bare single-threaded epoll peer (the limit).
// Nothing is pinned: the two CPUs are shared by the broker and every client.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sockbroker/client.hpp>

#include <cstring>
#include <grp.h>

#include "bench_env.hpp"
#include "fd_peer.hpp"
#include "latency_samples.hpp"
#include "shared_broker.hpp"

namespace sbbench {
namespace {

constexpr auto kRunFor = std::chrono::milliseconds(400);  // per repetition (kRepetitions)

struct ClientResult {
  std::uint64_t requests = 0;
  std::int64_t elapsed_ns = 0;
};

void drop_to_nobody() {
  if (::setgroups(0, nullptr) != 0) die("setgroups");
  if (::setresgid(kNogroup, kNogroup, kNogroup) != 0) die("setresgid");
  if (::setresuid(kNobody, kNobody, kNobody) != 0) die("setresuid");
}

// Starts `clients` processes that each prepare (connect), then wait for one
// start byte, then run `one_request` until kRunFor has passed. Returns the
// aggregate rate: the sum over clients of requests / their own elapsed time.
template <class Prepare, class Request>
double run_clients(int clients, Prepare&& prepare, Request&& one_request) {
  int ready[2], go[2], results[2];
  if (::pipe2(ready, O_CLOEXEC) != 0 || ::pipe2(go, O_CLOEXEC) != 0 || ::pipe2(results, O_CLOEXEC) != 0) die("pipe2");
  std::vector<pid_t> pids;
  for (int c = 0; c < clients; ++c) {
    pids.push_back(spawn([&] {
      drop_to_nobody();
      auto state = prepare();
      char byte = 'r';
      if (::write(ready[1], &byte, 1) != 1) die("write ready");
      if (::read(go[0], &byte, 1) != 1) die("read go");
      ClientResult result;
      auto start = now_ns();
      auto deadline = start + std::chrono::nanoseconds(kRunFor).count();
      std::int64_t now = start;
      while (now < deadline) {
        one_request(state);
        ++result.requests;
        now = now_ns();
      }
      result.elapsed_ns = now - start;
      // One small write per child: atomic below PIPE_BUF.
      if (::write(results[1], &result, sizeof result) != sizeof result) die("write result");
      return 0;
    }));
  }
  ::close(ready[1]);
  ::close(go[0]);
  ::close(results[1]);
  for (int c = 0; c < clients; ++c) {
    char byte;
    if (::read(ready[0], &byte, 1) != 1) die("a client failed to connect");
  }
  std::string start(static_cast<std::size_t>(clients), 'g');
  if (::write(go[1], start.data(), start.size()) != static_cast<ssize_t>(start.size())) die("write go");
  double rate = 0;
  for (int c = 0; c < clients; ++c) {
    ClientResult result;
    if (::read(results[0], &result, sizeof result) != sizeof result) die("read result");
    rate += static_cast<double>(result.requests) * 1e9 / static_cast<double>(result.elapsed_ns);
  }
  for (pid_t pid : pids) reap(pid, "throughput client");
  ::close(ready[0]);
  ::close(go[1]);
  ::close(results[0]);
  return rate;
}

void BM_Limit_Throughput(benchmark::State& state) {
  unpin_self();
  TempDir dir;
  std::string path = dir.file("server.sock");
  pid_t server = start_server_peer(path);
  double rate = 0;
  for (auto _ : state) {
    rate = run_clients(
        static_cast<int>(state.range(0)),
        [&] {
          int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
          sockaddr_un address{};
          address.sun_family = AF_UNIX;
          std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
          if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) die("connect");
          return fd;
        },
        [](int fd) { round_trip(fd); });
  }
  ::kill(server, SIGKILL);
  ::waitpid(server, nullptr, 0);
  state.counters["per_s"] = rate;
}

void BM_Grant_Throughput(benchmark::State& state) {
  unpin_self();
  Broker& broker = shared_broker();
  pin(broker.pid(), -1);  // earlier benchmarks placed it on one CPU
  std::string control = broker.control();
  double rate = 0;
  for (auto _ : state) {
    rate = run_clients(
        static_cast<int>(state.range(0)),
        [&] {
          auto client = sockbroker::Client::connect(control);
          if (!client) {
            errno = 0;
            die("connect: " + client.error().message);
          }
          return std::move(*client);
        },
        [](sockbroker::Client& client) {
          auto grant = client.acquire("web");
          if (!grant) {
            errno = 0;
            die("acquire web: " + grant.error().message);
          }
        });
  }
  state.counters["per_s"] = rate;
}

// The limit and the broker run with the same client counts (item 5), so
// that report.py can pair them.
void throughput_runs(benchmark::internal::Benchmark* runs) {
  runs->Arg(1)->Arg(4)->Arg(16)->Arg(64)->Iterations(1)->Repetitions(kRepetitions)->Unit(benchmark::kMillisecond);
}
BENCHMARK(BM_Limit_Throughput)->Apply(throughput_runs);
BENCHMARK(BM_Grant_Throughput)->Apply(throughput_runs);

}  // namespace
}  // namespace sbbench
