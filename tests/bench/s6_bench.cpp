// Item 3's competitor: s6-fdholder's connect + retrieve + close, done
// in-process with libs6 (the cheapest way an s6 user gets a held socket),
// against a real s6-fdholder-daemon holding one listening socket. The client is
// uid 65534, allowed by an s6-accessrules directory, as the broker's is by a rule.
// Without libs6-dev at build time or s6 at run time the benchmark is skipped
// with "not installed", which scripts/bench.sh prints in its row.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <thread>

#include "bench_env.hpp"
#include "latency_samples.hpp"

#ifdef SBBENCH_HAVE_S6
#include "s6_client.h"
#endif

namespace sbbench {
namespace {

constexpr const char* kDaemon = "/usr/bin/s6-fdholder-daemon";
constexpr int kSamples = 1000;  // per repetition (kRepetitions), as row 3's figure
constexpr int kWarmup = 500;

#ifdef SBBENCH_HAVE_S6
void write_rule(const TempDir& dir, const std::string& relative, const std::string& content) {
  std::filesystem::create_directories(std::filesystem::path(dir.file(relative)).parent_path());
  dir.write(relative, content);
}

bool connectable(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  bool ok = fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  if (fd >= 0) ::close(fd);
  return ok;
}
#endif

void BM_Alt_S6FdholderConnectRetrieveClose(benchmark::State& state) {
  const Placement placement = state.range(0) == 0 ? Placement::same_cpu : Placement::split_cpu;
  state.SetLabel(placement_name(placement));
#ifndef SBBENCH_HAVE_S6
  state.SkipWithError("not installed (libs6-dev, skalibs-dev at build time)");
  for (auto _ : state) {
  }
#else
  if (::access(kDaemon, X_OK) != 0) {
    state.SkipWithError("not installed (s6)");
    for (auto _ : state) {
    }
    return;
  }
  pin_self(0);
  TempDir dir;
  // root stores, nobody retrieves: the same split as the broker's.
  write_rule(dir, "rules/uid/0/allow", "");
  write_rule(dir, "rules/uid/0/env/S6_FDHOLDER_STORE_REGEX", ".*\n");
  write_rule(dir, "rules/uid/65534/allow", "");
  write_rule(dir, "rules/uid/65534/env/S6_FDHOLDER_RETRIEVE_REGEX", ".*\n");
  const std::string path = dir.file("fdholder.sock");
  const std::string rules = dir.file("rules");
  pid_t daemon = spawn([&] {
    std::vector<std::string> args{kDaemon, "-i", rules, path};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    return 127;
  });
  for (int i = 0; i < 5000 && !connectable(path); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  // s6-ipcserver makes the socket root-only; nobody must reach it (the broker's is 0666).
  if (::chmod(path.c_str(), 0666) != 0) die("chmod " + path);
  pin(daemon, peer_cpu(placement));

  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(92);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(listener, 511) != 0) {
    die("bind 127.0.0.1:92");
  }
  if (sbbench_s6_store(path.c_str(), listener, "tcp:web") != 0) die("s6-fdholder store");
  ::close(listener);

  Samples samples(kSamples);
  for (auto _ : state) {
    as_nobody([&] {
      for (int i = 0; i < kWarmup + kSamples; ++i) {
        auto t0 = now_ns();
        if (sbbench_s6_connect_retrieve_close(path.c_str(), "tcp:web") != 0) die("s6-fdholder retrieve");
        if (i >= kWarmup) samples.add_ns(now_ns() - t0);
      }
    });
  }
  ::kill(daemon, SIGTERM);
  ::waitpid(daemon, nullptr, 0);
  samples.report(state);
#endif
}

BENCHMARK(BM_Alt_S6FdholderConnectRetrieveClose)
    ->Arg(0)
    ->Arg(1)
    ->Iterations(1)
    ->Repetitions(kRepetitions)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sbbench
