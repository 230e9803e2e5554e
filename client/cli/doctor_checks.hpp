// The host settings `sockbroker doctor` reads, what each one protects, the
// values judged safe, and the fix for the others: one table, in doctor_checks.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sockbroker::cli {

enum class Verdict { ok, warn, bad, missing };

[[nodiscard]] const char* verdict_name(Verdict verdict) noexcept;

struct Finding {
  std::string key;   // "net.ipv4.tcp_fastopen"
  std::string path;  // "/proc/sys/net/ipv4/tcp_fastopen"
  bool per_netns = false;  // the value is the caller's network namespace's own
  std::optional<std::int64_t> value;  // none when missing or unreadable
  Verdict verdict = Verdict::missing;
  std::string why;         // why the setting matters, one line
  std::string assessment;  // what this value means, one line
  std::optional<std::int64_t> recommended;  // the value to set, for warn and bad
};

// The file `doctor` suggests for the lines that make a fix survive reboots.
inline constexpr const char* kSysctlDropIn = "/etc/sysctl.d/60-sockbroker.conf";

// Reads every setting under proc_sys (normally /proc/sys) and judges it.
[[nodiscard]] std::vector<Finding> run_checks(const std::string& proc_sys = "/proc/sys");

// "sysctl -w net.ipv4.tcp_syncookies=1" and "net.ipv4.tcp_syncookies = 1"
// (a line for kSysctlDropIn); empty unless the finding has a recommendation.
[[nodiscard]] std::string sysctl_command(const Finding& finding);
[[nodiscard]] std::string sysctl_d_line(const Finding& finding);

}  // namespace sockbroker::cli
