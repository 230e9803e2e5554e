// The per-uid audit rate limit (broker/audit_rate_limit.hpp), on a clock the
// test moves by hand.
#include <gtest/gtest.h>

#include <chrono>

#include "audit_rate_limit.hpp"

namespace sockbroker::broker {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Limits = AuditRateLimit::Limits;

constexpr uid_t kNobody = 65534;
const AuditRateLimit::Clock::time_point t0{seconds(1000)};

// How many of `n` lines at `at` the limit lets through.
int admitted(AuditRateLimit& limit, uid_t uid, int n, AuditRateLimit::Clock::time_point at, Limits limits) {
  int out = 0;
  for (int i = 0; i < n; ++i) out += limit.admit(uid, at, limits) ? 1 : 0;
  return out;
}

TEST(AuditRateLimit, ABurstPassesThenTheRateRefillsIt) {
  AuditRateLimit limit;
  const Limits limits{10, 100};
  EXPECT_EQ(admitted(limit, kNobody, 250, t0, limits), 100);
  EXPECT_EQ(limit.suppressed_total(), 150u);
  // A tenth of a second buys one line; half a second five.
  EXPECT_EQ(admitted(limit, kNobody, 10, t0 + milliseconds(100), limits), 1);
  EXPECT_EQ(admitted(limit, kNobody, 10, t0 + milliseconds(600), limits), 5);
  // Refilled to the burst, no further.
  EXPECT_EQ(admitted(limit, kNobody, 500, t0 + seconds(3600), limits), 100);
}

TEST(AuditRateLimit, EachUidHasItsOwnBucket) {
  AuditRateLimit limit;
  const Limits limits{1, 3};
  EXPECT_EQ(admitted(limit, kNobody, 10, t0, limits), 3);
  EXPECT_EQ(admitted(limit, 33, 10, t0, limits), 3) << "another uid is not held back by the first one's flood";
}

TEST(AuditRateLimit, RootAndARateOfZeroAreNotLimited) {
  AuditRateLimit limit;
  EXPECT_EQ(admitted(limit, 0, 10000, t0, Limits{1, 1}), 10000);
  EXPECT_EQ(admitted(limit, kNobody, 10000, t0, Limits{0, 1}), 10000);
  EXPECT_EQ(limit.suppressed_total(), 0u);
  EXPECT_FALSE(limit.next_due());
}

TEST(AuditRateLimit, OneSummaryPerUidPerWindowCountsWhatWasDropped) {
  AuditRateLimit limit;
  const Limits limits{1, 2};
  EXPECT_FALSE(limit.next_due());
  EXPECT_EQ(admitted(limit, kNobody, 7, t0, limits), 2);
  EXPECT_EQ(admitted(limit, 33, 4, t0 + seconds(1), limits), 2);
  ASSERT_TRUE(limit.next_due());
  EXPECT_EQ(*limit.next_due(), t0 + AuditRateLimit::kWindow);
  EXPECT_TRUE(limit.take_due(t0 + AuditRateLimit::kWindow - milliseconds(1)).empty());

  // The first uid's window ends first; more drops meanwhile join its count.
  EXPECT_EQ(admitted(limit, kNobody, 3, t0 + milliseconds(1500), limits), 1);
  auto first = limit.take_due(t0 + AuditRateLimit::kWindow);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].uid, std::optional<uid_t>(kNobody));
  EXPECT_EQ(first[0].count, 7u);  // 5 at t0, 2 at t0 + 1.5 s
  EXPECT_EQ(first[0].since, t0);
  ASSERT_TRUE(limit.next_due());
  EXPECT_EQ(*limit.next_due(), t0 + seconds(1) + AuditRateLimit::kWindow);

  auto second = limit.take_due(t0 + seconds(1) + AuditRateLimit::kWindow);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].uid, std::optional<uid_t>(33));
  EXPECT_EQ(second[0].count, 2u);
  EXPECT_FALSE(limit.next_due()) << "nothing is being counted any more";
  EXPECT_EQ(limit.suppressed_total(), 9u);
}

TEST(AuditRateLimit, TakeAllReportsWindowsNotYetEnded) {
  AuditRateLimit limit;
  const Limits limits{1, 1};
  (void)admitted(limit, 33, 3, t0, limits);
  (void)admitted(limit, kNobody, 2, t0, limits);
  auto all = limit.take_due(t0, true);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].uid, std::optional<uid_t>(33));  // by uid
  EXPECT_EQ(all[0].count, 2u);
  EXPECT_EQ(all[1].uid, std::optional<uid_t>(kNobody));
  EXPECT_EQ(all[1].count, 1u);
  EXPECT_TRUE(limit.take_due(t0 + seconds(60), true).empty());
}

TEST(AuditRateLimit, ManyUidsShareOneBucketPastTheTable) {
  AuditRateLimit limit;
  const Limits limits{1, 2};
  // Every uid of the table owes a summary, so none can be forgotten.
  for (uid_t uid = 1; uid <= AuditRateLimit::kMaxTracked; ++uid) EXPECT_EQ(admitted(limit, uid, 3, t0, limits), 2);
  EXPECT_EQ(limit.tracked(), AuditRateLimit::kMaxTracked);
  // The uids past it are counted together, in one bounded bucket.
  int through = 0;
  for (uid_t uid = 100000; uid < 100100; ++uid) through += admitted(limit, uid, 1, t0, limits);
  EXPECT_EQ(through, 2);
  EXPECT_EQ(limit.tracked(), AuditRateLimit::kMaxTracked);
  auto due = limit.take_due(t0 + AuditRateLimit::kWindow);
  ASSERT_EQ(due.size(), AuditRateLimit::kMaxTracked + 1);
  EXPECT_FALSE(due.back().uid) << "the shared bucket comes last and names no uid";
  EXPECT_EQ(due.back().count, 98u);

  // Once summarised and refilled, the table's buckets make room again.
  EXPECT_TRUE(limit.admit(200000, t0 + seconds(3600), limits));
  EXPECT_LE(limit.tracked(), AuditRateLimit::kMaxTracked);
}

}  // namespace
}  // namespace sockbroker::broker
