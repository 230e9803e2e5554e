#include "metrics.hpp"

#include <dirent.h>

#include <ctime>
#include <memory>
#include <numeric>

namespace sockbroker::broker {

std::int64_t Metrics::unix_now() noexcept { return static_cast<std::int64_t>(std::time(nullptr)); }

void Metrics::denied(std::string_view reason) {
  auto it = denials.find(reason);
  if (it == denials.end()) it = denials.emplace(std::string(reason), 0).first;
  ++it->second;
}

void Metrics::connected() noexcept {
  ++clients;
  if (clients > peak_clients) peak_clients = clients;
}

void Metrics::disconnected() noexcept {
  if (clients > 0) --clients;
}

void Metrics::reloaded(bool ok, std::string_view message) {
  ++(ok ? reloads_ok : reloads_failed);
  last_reload_time = unix_now();
  last_reload_ok = ok;
  last_reload_message = std::string(message);
}

std::uint64_t Metrics::uptime_seconds() const noexcept {
  auto age = std::chrono::steady_clock::now() - started;
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(age).count());
}

std::uint64_t Metrics::denials_total() const noexcept {
  return std::accumulate(denials.begin(), denials.end(), std::uint64_t{0},
                         [](std::uint64_t sum, const auto& entry) { return sum + entry.second; });
}

Result<std::uint32_t> count_open_fds() {
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir("/proc/self/fd"), ::closedir);
  if (!dir) return errno_error("opendir /proc/self/fd");
  std::uint32_t count = 0;
  errno = 0;
  while (const dirent* entry = ::readdir(dir.get())) {
    if (entry->d_name[0] != '.') ++count;
  }
  if (errno != 0) return errno_error("readdir /proc/self/fd");
  // The directory's own descriptor is listed too, and closes with it.
  return count > 0 ? count - 1 : 0;
}

}  // namespace sockbroker::broker
