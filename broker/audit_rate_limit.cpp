#include "audit_rate_limit.hpp"

#include <algorithm>

namespace sockbroker::broker {

bool AuditRateLimit::take(Bucket& bucket, Clock::time_point now, const Limits& limits) {
  const double elapsed = std::chrono::duration<double>(now - bucket.refilled).count();
  if (elapsed > 0) {
    bucket.tokens = std::min<double>(limits.burst, bucket.tokens + elapsed * limits.per_second);
    bucket.refilled = now;
  }
  if (bucket.tokens >= 1) {
    bucket.tokens -= 1;
    return true;
  }
  if (bucket.dropped++ == 0) {
    bucket.first_dropped = now;
    const auto due = now + kWindow;
    if (!earliest_due_ || due < *earliest_due_) earliest_due_ = due;
  }
  ++suppressed_total_;
  return false;
}

bool AuditRateLimit::prune(Clock::time_point now, const Limits& limits) {
  const std::size_t before = buckets_.size();
  std::erase_if(buckets_, [&](const auto& item) {
    const Bucket& b = item.second;
    const double elapsed = std::chrono::duration<double>(now - b.refilled).count();
    return b.dropped == 0 && b.tokens + elapsed * limits.per_second >= limits.burst;
  });
  return buckets_.size() < before;
}

bool AuditRateLimit::admit(uid_t uid, Clock::time_point now, const Limits& limits) {
  if (uid == 0 || limits.per_second == 0) return true;
  auto it = buckets_.find(uid);
  if (it == buckets_.end()) {
    const Bucket fresh{static_cast<double>(limits.burst), now, 0, {}};
    if (buckets_.size() >= kMaxTracked && !prune(now, limits)) {
      if (!overflow_) overflow_ = fresh;
      return take(*overflow_, now, limits);
    }
    it = buckets_.emplace(uid, fresh).first;
  }
  return take(it->second, now, limits);
}

std::vector<AuditRateLimit::Summary> AuditRateLimit::take_due(Clock::time_point now, bool all) {
  std::vector<Summary> out;
  if (!earliest_due_ || (!all && now < *earliest_due_)) return out;
  earliest_due_.reset();
  auto visit = [&](std::optional<uid_t> uid, Bucket& b) {
    if (b.dropped == 0) return;
    const auto due = b.first_dropped + kWindow;
    if (all || now >= due) {
      out.push_back(Summary{uid, b.dropped, b.first_dropped});
      b.dropped = 0;
    } else if (!earliest_due_ || due < *earliest_due_) {
      earliest_due_ = due;
    }
  };
  for (auto& [uid, bucket] : buckets_) visit(uid, bucket);
  if (overflow_) visit(std::nullopt, *overflow_);
  // By uid, the shared bucket last: the same order whatever the hash table's.
  std::sort(out.begin(), out.end(), [](const Summary& a, const Summary& b) {
    if (a.uid.has_value() != b.uid.has_value()) return a.uid.has_value();
    return a.uid.value_or(0) < b.uid.value_or(0);
  });
  return out;
}

}  // namespace sockbroker::broker
