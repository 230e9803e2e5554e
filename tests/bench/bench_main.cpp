// sockbroker_bench: the measurement suite (docs/PERFORMANCE.md). Root only: it
// enters a private network namespace, starts the real sockbrokerd from the
// build tree and talks to it as uid 65534. Run it through scripts/bench.sh,
// which turns the JSON output into the table of ratios.
#include <unistd.h>

#include <iostream>

#include "bench_env.hpp"

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 64;
  if (::geteuid() != 0) {
    std::cerr << "sockbroker_bench: must run as root (it starts sockbrokerd in a private network "
                 "namespace and binds ports 80, 81, 90, 91 there); run scripts/bench.sh as root\n";
    return 77;
  }
  // Before anything forks: every child (broker, peers, clients) inherits both.
  sbbench::enter_private_netns();
  sbbench::raise_fd_limit();
  benchmark::AddCustomContext("placement",
                              "client on CPU 0; broker or peer on CPU 0 (same_cpu) or CPU 1 (split_cpu)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
