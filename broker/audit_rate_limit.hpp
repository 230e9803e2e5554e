// What any local user can make the broker write, bounded per uid.
//
// Every uid can connect to the control socket, and every refusal it provokes
// (deny, bad_request) costs an audit line and a log line: unbounded, one uid
// wrote about 2 MB/s and could fill the audit file system, after which the
// trail is lost for everyone. A token bucket per uid (`burst` lines at once,
// `per_second` after) lets a misconfigured service be seen in full and stops a
// flood after its first lines; what it drops is counted, and reported once per
// uid per window as one `suppressed` event {uid, count, since}.
//
// What is not limited, and why:
//  - root: trusted (DESIGN.md, threat model), and able to write the file anyway;
//  - grants: each is a socket the policy allowed, and the record of who got
//    which port is what the trail is for. Dropping some would let a holder hide
//    a grant among many; their volume is bounded by what the policy allows, and
//    if they fill the disk, audit_failure = "deny" stops granting (audit.hpp);
//  - state changes (start, bind, reload, revoke, relisten, stop): root's acts
//    or the broker's own, a handful per event.
//
// Pure: the caller passes the time, so the tests need no clock.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

namespace sockbroker::broker {

class AuditRateLimit {
 public:
  using Clock = std::chrono::steady_clock;

  struct Limits {
    std::uint32_t per_second = 10;  // 0: no limit
    std::uint32_t burst = 100;      // lines one uid may write at once
  };

  // A uid whose lines were dropped: how many, since its first dropped line.
  struct Summary {
    std::optional<uid_t> uid;  // none: the uids past kMaxTracked, counted together
    std::uint64_t count = 0;
    Clock::time_point since;
  };

  // How long the lines of one uid are counted before their summary is due:
  // a flood costs at most one summary line per uid per window.
  static constexpr std::chrono::seconds kWindow{5};
  // uids with a bucket of their own. Beyond, one shared bucket: memory stays
  // bounded whatever the number of uids (a container's range, say).
  static constexpr std::size_t kMaxTracked = 1024;

  // Whether one line attributed to uid may be written at `now`; false: it is
  // counted, to be summarised.
  [[nodiscard]] bool admit(uid_t uid, Clock::time_point now, const Limits& limits);

  // The summaries due at `now` (every pending one when `all`), forgotten here.
  [[nodiscard]] std::vector<Summary> take_due(Clock::time_point now, bool all = false);
  // When the next summary is due, if any line is being counted.
  [[nodiscard]] std::optional<Clock::time_point> next_due() const noexcept { return earliest_due_; }

  // Lines dropped since start, every uid.
  [[nodiscard]] std::uint64_t suppressed_total() const noexcept { return suppressed_total_; }
  [[nodiscard]] std::size_t tracked() const noexcept { return buckets_.size(); }

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point refilled;
    std::uint64_t dropped = 0;  // since `first_dropped`, not yet summarised
    Clock::time_point first_dropped;
  };
  bool take(Bucket& bucket, Clock::time_point now, const Limits& limits);
  // Forgets buckets that are full again and owe no summary; false if none was.
  bool prune(Clock::time_point now, const Limits& limits);

  std::unordered_map<uid_t, Bucket> buckets_;
  std::optional<Bucket> overflow_;  // the uids past kMaxTracked
  // The earliest summary due, kept as lines are dropped: the loop asks it on
  // every turn, which must not walk the buckets.
  std::optional<Clock::time_point> earliest_due_;
  std::uint64_t suppressed_total_ = 0;
};

}  // namespace sockbroker::broker
