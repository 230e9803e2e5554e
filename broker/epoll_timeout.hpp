// The timeout epoll_wait(2) takes to wake at a deadline: whole milliseconds,
// rounded up.
#pragma once

#include <chrono>
#include <climits>
#include <optional>

namespace sockbroker::broker {

// -1 (no deadline: sleep until an event), 0 (the deadline has passed: handle
// it now), or the milliseconds left rounded *up*. Truncating turned the last
// fraction of a millisecond before a deadline (an audit flush, an idle
// connection's timeout) into epoll_wait(0) calls in a loop whenever an event
// woke the broker then: up to 1 ms spinning, on the CPU its callers run on.
template <typename Clock>
[[nodiscard]] int epoll_timeout_ms(typename Clock::time_point now,
                                   std::optional<typename Clock::time_point> deadline) noexcept {
  if (!deadline) return -1;
  if (*deadline <= now) return 0;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - now).count();
  return left >= INT_MAX ? INT_MAX : static_cast<int>(left);
}

}  // namespace sockbroker::broker
