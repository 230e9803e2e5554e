// The journal destination when journald is behind: its queue full (EAGAIN) is
// waited on for Audit::kBusyGrace without the trail counting as failing (so
// grants go on), retried every kBusyRetry; a journald that takes nothing for
// the grace is a failing trail (lines a previous broker carried over get
// no grace); a failing trail's backlog is fed as fast as
// journald takes it, not one queue-full per kRetryInterval; and the lines
// still waiting when the broker exits are a failing trail's (kept or logged).
// journald is a datagram socket whose queue the test fills and empties.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "audit.hpp"
#include "fake_journald.hpp"

namespace sockbroker::broker {
namespace {

using std::chrono::steady_clock;

class AuditBusyJournal : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(journald_.ok());
    auto audit = Audit::open_journal(journald_.path());
    ASSERT_TRUE(audit) << audit.error().describe();
    audit_.emplace(std::move(*audit));
    audit_->emit("start", {{"pid", 1}});
    ASSERT_FALSE(audit_->failing());
    ASSERT_EQ(events(), std::vector<std::string>{"start"});
  }

  // The SOCKBROKER_EVENT of every audit entry queued, in order; the filler's
  // one-byte datagrams are read and skipped.
  std::vector<std::string> events() {
    std::vector<std::string> out;
    for (std::string entry; !(entry = journald_.receive()).empty();) {
      const std::string key = "\nSOCKBROKER_EVENT=";
      const auto at = entry.find(key);
      if (at == std::string::npos) continue;
      const auto start = at + key.size();
      out.push_back(entry.substr(start, entry.find('\n', start) - start));
    }
    return out;
  }

  void deny(int times = 1) {
    for (int i = 0; i < times; ++i) audit_->emit("deny", {{"reason", "unknown_socket"}});
  }

  sbtest::FakeJournald journald_;
  std::optional<Audit> audit_;
};

TEST_F(AuditBusyJournal, AJournaldBehindIsWaitedForWithoutFailingTheTrail) {
  ASSERT_GT(journald_.fill(), 0);
  deny();
  EXPECT_FALSE(audit_->failing()) << "a full queue is not yet a failing trail";
  EXPECT_EQ(audit_->lines_pending(), 1u);
  auto due = audit_->flush_deadline();
  ASSERT_TRUE(due);
  EXPECT_LE(*due, steady_clock::now() + Audit::kBusyRetry) << "retried soon, not after kRetryInterval";

  EXPECT_TRUE(events().empty());  // journald catches up
  audit_->flush();
  EXPECT_FALSE(audit_->failing());
  EXPECT_EQ(audit_->lines_pending(), 0u);
  EXPECT_FALSE(audit_->flush_deadline());
  EXPECT_EQ(events(), std::vector<std::string>{"deny"}) << "no outage, so no audit_resumed";
}

TEST_F(AuditBusyJournal, AJournaldThatTakesNothingForTheGraceIsAFailingTrail) {
  ASSERT_GT(journald_.fill(), 0);
  deny();
  std::this_thread::sleep_for(Audit::kBusyGrace + std::chrono::milliseconds(20));
  audit_->flush();
  ASSERT_TRUE(audit_->failing());
  EXPECT_EQ(audit_->failure()->sys_errno, EAGAIN);

  (void)events();
  audit_->flush();
  EXPECT_FALSE(audit_->failing());
  EXPECT_EQ(events(), (std::vector<std::string>{"deny", "audit_resumed"}));
}

TEST_F(AuditBusyJournal, AFailingTrailsBacklogIsFedAsFastAsJournaldTakesIt) {
  const int queue = journald_.fill();
  ASSERT_GT(queue, 0);
  deny();
  std::this_thread::sleep_for(Audit::kBusyGrace + std::chrono::milliseconds(20));
  audit_->flush();
  ASSERT_TRUE(audit_->failing());
  deny(2 * queue);  // more than one queue-full waits

  // journald takes what is queued: the next attempt fills the queue again and
  // the one after comes at kBusyRetry, not kRetryInterval.
  (void)events();
  audit_->flush();
  EXPECT_TRUE(audit_->failing()) << "the backlog is not out yet";
  auto due = audit_->flush_deadline();
  ASSERT_TRUE(due);
  EXPECT_LE(*due, steady_clock::now() + Audit::kBusyRetry);

  // journald stalls again: nothing goes, and retries slow down to kRetryInterval.
  audit_->flush();
  due = audit_->flush_deadline();
  ASSERT_TRUE(due);
  EXPECT_GT(*due, steady_clock::now() + Audit::kBusyGrace);

  std::vector<std::string> seen;
  for (int round = 0; round < 10 && audit_->failing(); ++round) {
    auto more = events();
    seen.insert(seen.end(), more.begin(), more.end());
    audit_->flush();
  }
  EXPECT_FALSE(audit_->failing());
  auto rest = events();
  seen.insert(seen.end(), rest.begin(), rest.end());
  ASSERT_EQ(seen.size(), static_cast<std::size_t>(2 * queue + 2)) << "every deny once, then audit_resumed";
  EXPECT_EQ(seen.back(), "audit_resumed");
}

TEST_F(AuditBusyJournal, LinesAJournaldBehindHasNotTakenAtExitAreAFailingTrailsLines) {
  ASSERT_GT(journald_.fill(), 0);
  deny();
  EXPECT_FALSE(audit_->failing());
  audit_->flush_before_exit();
  EXPECT_TRUE(audit_->failing()) << "so that the exit keeps or logs them";
  EXPECT_EQ(audit_->lines_pending(), 1u);
  EXPECT_NE(audit_->unwritten().find("\"event\":\"deny\""), std::string::npos);
}

TEST_F(AuditBusyJournal, AJournaldThatCatchesUpBeforeTheExitGetsEveryLine) {
  ASSERT_GT(journald_.fill(), 0);
  deny();
  std::thread reader([&] {
    std::this_thread::sleep_for(Audit::kBusyRetry * 3);
    while (!journald_.receive().empty()) {
    }
  });
  audit_->flush_before_exit();
  reader.join();
  EXPECT_FALSE(audit_->failing());
  EXPECT_EQ(audit_->lines_pending(), 0u);
}

// A broker started with the lines the previous one could not write (a
// restart or an upgrade while journald was stalled): they have waited
// already, so a full queue fails the trail at once and grants stop.
TEST_F(AuditBusyJournal, LinesCarriedFromThePreviousBrokerGetNoGrace) {
  ASSERT_GT(journald_.fill(), 0);
  auto next = Audit::open_journal(journald_.path());
  ASSERT_TRUE(next);
  next->carry_in("{\"event\":\"deny\"}\n");
  next->emit("start", {{"pid", 2}});
  EXPECT_TRUE(next->failing());
  EXPECT_EQ(next->lines_pending(), 2u);
}

}  // namespace
}  // namespace sockbroker::broker
