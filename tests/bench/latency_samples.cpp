#include "latency_samples.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>

#include "bench_env.hpp"

namespace sbbench {

double Samples::percentile_us(double p) {
  if (ns_.empty()) return 0;
  // Nearest rank: the smallest sample with at least p of them at or below it.
  auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(ns_.size())));
  rank = std::clamp<std::size_t>(rank, 1, ns_.size()) - 1;
  std::nth_element(ns_.begin(), ns_.begin() + static_cast<std::ptrdiff_t>(rank), ns_.end());
  return static_cast<double>(ns_[rank]) / 1000.0;
}

void Samples::report(benchmark::State& state) {
  state.counters["p50_us"] = percentile_us(0.50);
  state.counters["p99_us"] = percentile_us(0.99);
  state.counters["samples"] = static_cast<double>(ns_.size());
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

std::vector<std::int64_t> read_samples(int fd) {
  std::vector<std::int64_t> out;
  std::int64_t value = 0;
  std::size_t have = 0;
  auto* bytes = reinterpret_cast<char*>(&value);
  for (;;) {
    ssize_t n = ::read(fd, bytes + have, sizeof value - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("read samples");
    if (n == 0) break;
    have += static_cast<std::size_t>(n);
    if (have == sizeof value) {
      out.push_back(value);
      have = 0;
    }
  }
  return out;
}

std::vector<std::int64_t> samples_from_child(const std::string& what, const std::function<int(int report)>& fn) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) die("pipe2");
  pid_t pid = spawn([&] {
    ::close(pipe_fds[0]);
    return fn(pipe_fds[1]);
  });
  ::close(pipe_fds[1]);
  auto ns = read_samples(pipe_fds[0]);
  ::close(pipe_fds[0]);
  reap(pid, what);
  return ns;
}

}  // namespace sbbench
