#include "revoke_watcher.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace sockbroker::cli {
namespace {

// The broker restarts in well under a second when all goes well; after that,
// a slow retry costs nothing and floods no log.
constexpr std::chrono::milliseconds kFirstRetry{100};
constexpr std::chrono::milliseconds kLastRetry{5000};

void say(const std::string& line) {
  std::string out = "sockbroker run: " + line + "\n";
  (void)!::write(STDERR_FILENO, out.data(), out.size());
}

}  // namespace

RevokeWatcher::RevokeWatcher(std::string control) : control_(std::move(control)) { connect(); }

int RevokeWatcher::timeout_ms() const {
  if (client_ || unsupported_) return -1;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(next_attempt_ - std::chrono::steady_clock::now());
  return static_cast<int>(std::max<std::chrono::milliseconds::rep>(0, left.count()));
}

void RevokeWatcher::connect() {
  auto client = Client::connect(control_);
  if (!client) return lost(client.error().describe());
  if (auto watched = client->watch(); !watched) {
    if (watched.error().code == SOCKBROKER_E_PROTOCOL) {
      // An older broker: revocations cannot be heard; the program serves on.
      say("note: the broker cannot tell of revocations (" + watched.error().describe() + ")");
      unsupported_ = true;
      return;
    }
    return lost(watched.error().describe());
  }
  if (said_lost_) say("connected to the broker again; revocations are heard");
  client_.emplace(std::move(*client));
  backoff_ = std::chrono::milliseconds(0);
  said_lost_ = false;
}

void RevokeWatcher::lost(const std::string& why) {
  client_.reset();
  if (!said_lost_) {
    say("lost the broker (" + why + "); the program serves on, and revocations are not heard until it is back");
    said_lost_ = true;
  }
  backoff_ = std::clamp(backoff_ * 2, kFirstRetry, kLastRetry);
  next_attempt_ = std::chrono::steady_clock::now() + backoff_;
}

std::vector<RevokeNotice> RevokeWatcher::service() {
  std::vector<RevokeNotice> out;
  if (!client_) {
    if (!unsupported_ && std::chrono::steady_clock::now() >= next_attempt_) connect();
    return out;
  }
  for (;;) {
    auto notice = client_->next_notice();
    if (!notice) {
      lost(notice.error().describe());
      return out;
    }
    if (!*notice) return out;
    out.push_back(std::move(**notice));
  }
}

}  // namespace sockbroker::cli
