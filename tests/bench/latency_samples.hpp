// Per-call latencies: timing a call many times, bringing the times back from a
// child process, and turning them into the percentiles the report tabulates.
//
// Many rows time their calls in a child (another uid for good, a reuse_port
// holder whose members die with it, a program under a seccomp filter), which
// writes each time to a pipe as one int64 of nanoseconds; the parent reads
// them into Samples. One copy of that here, not one per row.
#pragma once

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace sbbench {

[[nodiscard]] inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Per-iteration latencies, in nanoseconds.
class Samples {
 public:
  explicit Samples(std::size_t expected = 0) { ns_.reserve(expected); }
  void add(std::chrono::nanoseconds d) { ns_.push_back(d.count()); }
  void add_ns(std::int64_t ns) { ns_.push_back(ns); }
  void add_all(const std::vector<std::int64_t>& ns) { ns_.insert(ns_.end(), ns.begin(), ns.end()); }
  [[nodiscard]] double percentile_us(double p);
  // Sets the counters p50_us and p99_us (and n) on the benchmark's state.
  void report(benchmark::State& state);

 private:
  std::vector<std::int64_t> ns_;
};

// Calls step warmup times unrecorded, then count times, each one timed alone.
template <class Step>
void time_each(Samples& samples, int warmup, int count, Step&& step) {
  for (int i = 0; i < warmup; ++i) step();
  for (int i = 0; i < count; ++i) {
    const std::int64_t t0 = now_ns();
    step();
    samples.add_ns(now_ns() - t0);
  }
}
// The same, the times returned for write_samples (in a child).
template <class Step>
[[nodiscard]] std::vector<std::int64_t> time_each(int warmup, int count, Step&& step) {
  for (int i = 0; i < warmup; ++i) step();
  std::vector<std::int64_t> ns;
  ns.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    const std::int64_t t0 = now_ns();
    step();
    ns.push_back(now_ns() - t0);
  }
  return ns;
}

// Writes ns to fd, one int64 each; aborts on failure.
void write_samples(int fd, const std::vector<std::int64_t>& ns);
// Reads int64s from fd until end of file; aborts on failure.
[[nodiscard]] std::vector<std::int64_t> read_samples(int fd);

// Forks a child running fn(report), which writes its samples to report (a
// pipe's end), and returns them once the child has exited; `what` names the
// child if it fails.
[[nodiscard]] std::vector<std::int64_t> samples_from_child(const std::string& what,
                                                           const std::function<int(int report)>& fn);

}  // namespace sbbench
