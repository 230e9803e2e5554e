// The settings `sockbroker doctor` judges. The thresholds follow the usual
// Linux socket-hardening advice (sysctl net.*, see sockbroker(1)) and the broker's own
// needs: "bad" is reserved for values that defeat what the broker protects
// (or open the host to a flood), "warn" for values with legitimate uses.
#include "doctor_checks.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include <sockbroker/fd.hpp>

namespace sockbroker::cli {
namespace {

struct Judgement {
  Verdict verdict = Verdict::ok;
  std::string assessment;
  std::optional<std::int64_t> recommended;  // set for warn and bad
};

using Judge = Judgement (*)(std::int64_t value);

struct Check {
  const char* key;
  bool per_netns;
  const char* why;
  Judge judge;
  const char* when_missing;  // what a kernel without the setting means
};

constexpr std::int64_t kTfoServer = 0x2;             // TFO_SERVER_ENABLE
constexpr std::int64_t kTfoServerNoCookie = 0x200;   // TFO_SERVER_COOKIE_NOT_REQD
constexpr std::int64_t kTfoServerEveryone = 0x400;   // TFO_SERVER_WO_SOCKOPT1
constexpr std::int64_t kBufferCap = 16 * 1024 * 1024;  // the background's 16 MiB ceiling
constexpr std::int64_t kSomaxconn = 4096;              // the kernel's default since 5.4

Judgement fastopen(std::int64_t v) {
  std::int64_t fixed = v & ~(kTfoServer | kTfoServerNoCookie | kTfoServerEveryone);  // keeps the client bits
  if ((v & kTfoServerEveryone) != 0) {
    return {Verdict::bad, "server Fast Open is forced on every listener, even those that never asked (0x400)", fixed};
  }
  if ((v & kTfoServerNoCookie) != 0) {
    return {Verdict::bad, "servers accept data in a SYN without a cookie (0x200): anyone can spoof and replay it", fixed};
  }
  if ((v & kTfoServer) != 0) {
    return {Verdict::warn, "server side on (bit 0x2): any listener that sets TCP_FASTOPEN gets data before the handshake",
            fixed};
  }
  return {Verdict::ok, "server side off", {}};
}

Judgement syncookies(std::int64_t v) {
  if (v == 1) return {Verdict::ok, "SYN cookies when a listen queue overflows", {}};
  if (v == 0) return {Verdict::bad, "off: a SYN flood fills the listen queues and real clients are refused", 1};
  if (v == 2) {
    return {Verdict::warn, "cookies for every connection, flood or not: TCP options (window scaling, SACK) are lost", 1};
  }
  return {Verdict::warn, "unknown value (0, 1 or 2 are defined)", 1};
}

Judgement nonlocal_bind(std::int64_t v) {
  if (v == 0) return {Verdict::ok, "only addresses the host has can be bound", {}};
  return {Verdict::warn,
          "any process may bind addresses the host does not have yet (squatting a floating IP); "
          "if a transparent proxy needs it, set it in that proxy's network namespace only",
          0};
}

Judgement somaxconn(std::int64_t v) {
  if (v >= kSomaxconn) return {Verdict::ok, "listen backlogs up to " + std::to_string(v), {}};
  return {Verdict::warn,
          "every listen(2) backlog is cut to " + std::to_string(v) + " (the policy's default is 511): a burst overflows",
          kSomaxconn};
}

Judgement unprivileged_port_start(std::int64_t v) {
  if (v >= 1024) return {Verdict::ok, "ports below " + std::to_string(v) + " need root or CAP_NET_BIND_SERVICE", {}};
  if (v <= 0) return {Verdict::bad, "any user may bind every port: the broker's privileged ports protect nothing", 1024};
  return {Verdict::bad,
          "any user may bind ports " + std::to_string(v) + "-1023: the broker's privileged ports there protect nothing",
          1024};
}

Judgement buffer_max(std::int64_t v) {
  if (v <= kBufferCap) return {Verdict::ok, "at most " + std::to_string(v) + " bytes per socket buffer", {}};
  return {Verdict::warn,
          "one socket may pin " + std::to_string(v) + " bytes of kernel memory per buffer: many sockets exhaust memory",
          kBufferCap};
}

Judgement io_uring_disabled(std::int64_t v) {
  if (v == 2) return {Verdict::ok, "io_uring is off for every process", {}};
  if (v == 1) {
    return {Verdict::ok,
            "only members of kernel.io_uring_group (and CAP_SYS_ADMIN) may create rings: keep services out of it "
            "(the lockdown denies io_uring anyway)",
            {}};
  }
  return {Verdict::warn,
          "any process may create io_uring rings, which bind and listen (Linux >= 6.11) past seccomp filters that "
          "watch bind(2); `sockbroker run` denies io_uring, other confinement may not",
          2};
}

// The table. Per-netns settings are the caller's namespace's: a container's
// values can differ from the host's.
constexpr Check kChecks[] = {
    {"net.ipv4.tcp_fastopen", true,
     "server-side TCP Fast Open hands data from a SYN to the service before the handshake completes; it can be replayed",
     fastopen, nullptr},
    {"net.ipv4.tcp_syncookies", true,
     "SYN cookies keep a listener reachable during a SYN flood instead of dropping real clients", syncookies, nullptr},
    {"net.ipv4.ip_nonlocal_bind", true,
     "binding addresses the host does not have lets a process hold an IP before the service that should own it",
     nonlocal_bind, nullptr},
    {"net.ipv6.ip_nonlocal_bind", true,
     "binding addresses the host does not have lets a process hold an IP before the service that should own it",
     nonlocal_bind, "this kernel has no IPv6 (or no such setting)"},
    {"net.core.somaxconn", true, "the ceiling of every listen(2) backlog: the connections that can wait to be accepted",
     somaxconn, nullptr},
    {"net.ipv4.ip_unprivileged_port_start", true,
     "ports below it need privilege: the broker exists to keep them out of unprivileged hands", unprivileged_port_start,
     nullptr},
    {"net.core.rmem_max", false, "the largest receive buffer a socket may ask for (SO_RCVBUF): kernel memory per socket",
     buffer_max, nullptr},
    {"net.core.wmem_max", false, "the largest send buffer a socket may ask for (SO_SNDBUF): kernel memory per socket",
     buffer_max, nullptr},
    {"kernel.io_uring_disabled", false,
     "io_uring can bind and listen without the system calls a seccomp sandbox filters", io_uring_disabled,
     "this kernel (< 6.6) cannot disable io_uring: rely on `sockbroker run`'s lockdown, which denies it"},
};

// Reads one integer from a /proc/sys file. ENOENT: the kernel lacks the setting.
std::optional<std::int64_t> read_integer(const std::string& path, int* err) {
  *err = 0;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    *err = errno;
    return std::nullopt;
  }
  char buffer[64];
  ssize_t n;
  do {
    n = ::read(fd.get(), buffer, sizeof buffer - 1);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    *err = errno;
    return std::nullopt;
  }
  std::string_view text(buffer, static_cast<std::size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) {
    *err = EINVAL;
    return std::nullopt;
  }
  return value;
}

}  // namespace

const char* verdict_name(Verdict verdict) noexcept {
  switch (verdict) {
    case Verdict::ok: return "ok";
    case Verdict::warn: return "warn";
    case Verdict::bad: return "bad";
    case Verdict::missing: return "missing";
  }
  return "missing";
}

std::vector<Finding> run_checks(const std::string& proc_sys) {
  std::vector<Finding> findings;
  for (const auto& check : kChecks) {
    Finding f;
    f.key = check.key;
    std::string relative = check.key;
    for (char& c : relative) c = c == '.' ? '/' : c;
    f.path = proc_sys + "/" + relative;
    f.per_netns = check.per_netns;
    f.why = check.why;
    int err = 0;
    f.value = read_integer(f.path, &err);
    if (f.value) {
      auto j = check.judge(*f.value);
      f.verdict = j.verdict;
      f.assessment = std::move(j.assessment);
      if (f.verdict == Verdict::warn || f.verdict == Verdict::bad) f.recommended = j.recommended;
    } else if (err == ENOENT) {
      f.verdict = Verdict::missing;
      f.assessment = check.when_missing != nullptr ? check.when_missing : "this kernel has no such setting";
    } else {
      // Readable by everyone on every kernel we know: say what stopped us.
      f.verdict = Verdict::warn;
      f.assessment = err == EINVAL ? "cannot read " + f.path + ": not an integer"
                                   : "cannot read " + f.path + ": " + std::strerror(err);
    }
    findings.push_back(std::move(f));
  }
  return findings;
}

std::string sysctl_command(const Finding& finding) {
  if (!finding.recommended) return {};
  return "sysctl -w " + finding.key + "=" + std::to_string(*finding.recommended);
}

std::string sysctl_d_line(const Finding& finding) {
  if (!finding.recommended) return {};
  return finding.key + " = " + std::to_string(*finding.recommended);
}

}  // namespace sockbroker::cli
