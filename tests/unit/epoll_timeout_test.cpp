// epoll_timeout_ms (broker/epoll_timeout.hpp): the broker's loop sleeps until
// its next deadline, and never wakes before it only to find nothing to do.
#include <gtest/gtest.h>

#include <chrono>
#include <climits>
#include <optional>

#include "epoll_timeout.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using sockbroker::broker::epoll_timeout_ms;

const Clock::time_point kNow{123456789us};

TEST(EpollTimeout, NoDeadlineSleepsUntilAnEvent) {
  EXPECT_EQ(epoll_timeout_ms<Clock>(kNow, std::nullopt), -1);
}

TEST(EpollTimeout, DeadlineReachedOrPassedIsHandledNow) {
  EXPECT_EQ(epoll_timeout_ms<Clock>(kNow, kNow), 0);
  EXPECT_EQ(epoll_timeout_ms<Clock>(kNow, kNow - 1ns), 0);
  EXPECT_EQ(epoll_timeout_ms<Clock>(kNow, kNow - 5s), 0);
}

// The bug this guards against: the last fraction of a millisecond truncated
// to 0, and the loop called epoll_wait(0) over and over until the deadline.
TEST(EpollTimeout, LessThanAMillisecondLeftSleepsOneMillisecond) {
  EXPECT_EQ(epoll_timeout_ms<Clock>(kNow, kNow + 1ns), 1);
  EXPECT_EQ(epoll_timeout_ms<Clock>(kNow, kNow + 300us), 1);
  EXPECT_EQ(epoll_timeout_ms<Clock>(kNow, kNow + 999999ns), 1);
}

TEST(EpollTimeout, RoundsUpSoTheWakeUpIsNeverEarly) {
  EXPECT_EQ(epoll_timeout_ms<Clock>(kNow, kNow + 1ms), 1);
  EXPECT_EQ(epoll_timeout_ms<Clock>(kNow, kNow + 1ms + 1ns), 2);
  EXPECT_EQ(epoll_timeout_ms<Clock>(kNow, kNow + 10ms), 10);
  EXPECT_EQ(epoll_timeout_ms<Clock>(kNow, kNow + 9ms + 400us), 10);
}

TEST(EpollTimeout, FarDeadlineIsClampedToWhatEpollTakes) {
  EXPECT_EQ(epoll_timeout_ms<Clock>(kNow, kNow + 1000h), INT_MAX);
  EXPECT_EQ(epoll_timeout_ms<Clock>(kNow, kNow + 2000ms), 2000);
}

}  // namespace
