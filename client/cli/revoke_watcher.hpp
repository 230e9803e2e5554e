// The supervisor's standing connection to the broker (Client::watch): it hears
// when a revoke or a reload ends one of its grants, and it reconnects, with
// backoff, when the broker restarts, so that a holder the next broker adopted
// is told too.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <sockbroker/client.hpp>

namespace sockbroker::cli {

class RevokeWatcher {
 public:
  // Connects and watches at once (before the program starts, so no revoke
  // is missed); a broker that cannot be reached is retried later.
  explicit RevokeWatcher(std::string control);

  // What to poll for POLLIN: -1 while disconnected.
  [[nodiscard]] int fd() const noexcept { return client_ ? client_->notice_fd() : -1; }
  // How long poll(2) may sleep before the next reconnection attempt; -1: no limit.
  [[nodiscard]] int timeout_ms() const;
  // After poll: reads what is queued (fd readable) or reconnects (when due).
  // Returns the notices received; says on stderr what went wrong.
  [[nodiscard]] std::vector<RevokeNotice> service();

 private:
  void connect();
  void lost(const std::string& why);

  std::string control_;
  std::optional<Client> client_;
  std::chrono::steady_clock::time_point next_attempt_{};
  std::chrono::milliseconds backoff_{0};
  bool unsupported_ = false;  // a broker that does not know `watch`: stop asking
  bool said_lost_ = false;    // one line per outage, not one per attempt
};

}  // namespace sockbroker::cli
