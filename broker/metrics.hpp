// The broker's counters behind `sockbroker status` and the sd_notify STATUS=
// line: plain numbers bumped where the decisions are made (request_handler.cpp,
// server.cpp). Owned by BrokerState; the loop is single-threaded, so no atomics.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include <sockbroker/fd.hpp>

namespace sockbroker::broker {

struct Metrics {
  // Wall time for people, monotonic time for the uptime (a clock step must not
  // make the broker younger).
  std::int64_t start_time = unix_now();
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  std::uint64_t grants = 0;
  // By the reason audit deny events carry ("no_rule_matched", "quota", ...):
  // a handful of fixed words, never client text, so the map stays small.
  std::map<std::string, std::uint64_t, std::less<>> denials = {};
  std::uint64_t bad_requests = 0;  // datagrams that did not decode

  std::uint32_t clients = 0;  // control connections open now
  std::uint32_t peak_clients = 0;

  std::uint64_t reloads_ok = 0;
  std::uint64_t reloads_failed = 0;
  std::int64_t last_reload_time = 0;  // 0: never
  bool last_reload_ok = false;
  std::string last_reload_message = {};
  std::uint64_t upgrades = 0;
  std::int64_t last_upgrade_time = 0;  // 0: never
  bool audit_kept_in_store = false;    // the unwritten audit lines have a copy in systemd's store
  std::string audit_kept_in_file;      // ... in this file (audit_spill.hpp); "": none

  void denied(std::string_view reason);
  void connected() noexcept;
  void disconnected() noexcept;
  // SIGHUP or `sockbroker reload`, whichever asked.
  void reloaded(bool ok, std::string_view message);

  [[nodiscard]] std::uint64_t uptime_seconds() const noexcept;
  [[nodiscard]] std::uint64_t denials_total() const noexcept;

  static std::int64_t unix_now() noexcept;
};

// The descriptors this process holds, from /proc/self/fd (the directory's own
// descriptor not counted). Works under the broker's seccomp filter: a read-only
// openat and getdents64.
[[nodiscard]] Result<std::uint32_t> count_open_fds();

}  // namespace sockbroker::broker
