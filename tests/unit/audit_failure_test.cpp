// The audit trail when it cannot be written: whole lines or nothing, lines
// kept and written when it can be again, a bound on what is kept, and the
// events that say so. Without root: RLIMIT_FSIZE makes a regular file refuse
// the rest of a write the way a full file system does (a short write, then an
// error), /dev/full refuses everything, and a non-blocking pipe cuts a line it
// cannot take back. The real full file system is tests/integration/audit_failure_test.cpp.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "audit.hpp"

namespace sockbroker::broker {
namespace {

using nlohmann::json;

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) {
      out.push_back(text.substr(start));  // no newline: a cut line
      break;
    }
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A line of about `size` bytes.
void emit_padded(Audit& audit, std::string_view event, std::size_t size) {
  audit.emit(event, {{"padding", std::string(size, 'x')}});
}

// RLIMIT_FSIZE for this process while in scope, SIGXFSZ ignored (the kernel
// then fails the write with EFBIG instead of killing the process).
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    old_handler_ = ::signal(SIGXFSZ, SIG_IGN);
    rlimit limit = saved_;
    limit.rlim_cur = bytes;
    EXPECT_EQ(::setrlimit(RLIMIT_FSIZE, &limit), 0);
  }
  ~FileSizeLimit() { lift(); }
  void lift() {
    if (lifted_) return;
    lifted_ = true;
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    ::signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit saved_{};
  sighandler_t old_handler_ = SIG_DFL;
  bool lifted_ = false;
};

class AuditFailure : public ::testing::Test {
 protected:
  void SetUp() override {
    char name[] = "/tmp/sockbroker-audit-failure.XXXXXX";
    int fd = ::mkstemp(name);
    ASSERT_GE(fd, 0);
    ::close(fd);
    path_ = name;
  }
  void TearDown() override { ::unlink(path_.c_str()); }

  Audit open_file() {
    UniqueFd fd(::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
    EXPECT_TRUE(fd);
    return Audit::adopt(std::move(fd));
  }

  std::string path_;
};

TEST_F(AuditFailure, ALineCutShortIsTakenBackAndWrittenWhenTheFileTakesItAgain) {
  Audit audit = open_file();
  audit.emit("start", {{"pid", 1}});
  const auto first = file_text(path_);
  ASSERT_FALSE(first.empty());
  EXPECT_FALSE(audit.failing());
  {
    // Room for 50 more bytes: the next line is written in part, then refused.
    FileSizeLimit limit(first.size() + 50);
    emit_padded(audit, "grant", 200);
    ASSERT_TRUE(audit.failing());
    EXPECT_EQ(audit.failure()->sys_errno, EFBIG);
    EXPECT_GT(audit.failing_since(), 0);
    EXPECT_EQ(file_text(path_), first) << "the part written was taken back";
    // Kept, not tried: the next attempt is the retry (or a flush).
    audit.emit("deny", {{"reason", "no_rule_matched"}});
    EXPECT_EQ(file_text(path_), first);
    // A retry that still fails leaves the file as it was.
    audit.flush();
    EXPECT_TRUE(audit.failing());
    EXPECT_EQ(file_text(path_), first);
    ASSERT_TRUE(audit.flush_deadline());
  }
  audit.flush();
  EXPECT_FALSE(audit.failing());
  EXPECT_EQ(audit.failing_since(), 0);
  const auto lines = split_lines(file_text(path_));
  ASSERT_EQ(lines.size(), 4u) << file_text(path_);
  std::vector<std::string> events;
  for (const auto& line : lines) {
    auto event = json::parse(line, nullptr, false);
    ASSERT_TRUE(event.is_object()) << "not a whole JSON line: " << line;
    events.push_back(event["event"]);
  }
  EXPECT_EQ(events, (std::vector<std::string>{"start", "grant", "deny", "audit_resumed"}));
  auto resumed = json::parse(lines.back());
  EXPECT_EQ(resumed["lines_lost"], 0);
  EXPECT_EQ(resumed["error"], std::strerror(EFBIG));
  EXPECT_TRUE(resumed["since"].is_string());
  EXPECT_EQ(audit.lines_lost(), 0u);
}

TEST_F(AuditFailure, BatchedLinesKeepTheWholeOnesWrittenBeforeTheCut) {
  Audit audit = open_file();
  audit.set_flush_interval(std::chrono::milliseconds(1000));
  for (int i = 0; i < 5; ++i) emit_padded(audit, "grant", 100);
  EXPECT_TRUE(file_text(path_).empty()) << "batched until flushed";
  {
    // Room for two and a half of the five lines.
    FileSizeLimit limit(2 * 150 + 75);
    audit.flush();
    ASSERT_TRUE(audit.failing());
    const auto text = file_text(path_);
    ASSERT_FALSE(text.empty());
    EXPECT_EQ(text.back(), '\n') << "ends with a whole line";
    EXPECT_EQ(split_lines(text).size(), 2u);
  }
  audit.flush();
  EXPECT_FALSE(audit.failing());
  EXPECT_EQ(split_lines(file_text(path_)).size(), 5u) << "audit_resumed waits for the next batch, like any line";
  audit.flush();
  const auto lines = split_lines(file_text(path_));
  ASSERT_EQ(lines.size(), 6u);
  for (const auto& line : lines) EXPECT_TRUE(json::parse(line, nullptr, false).is_object()) << line;
}

TEST(AuditFailureDevice, WhatIsKeptIsBoundedAndTheRestCounted) {
  UniqueFd full(::open("/dev/full", O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(full);
  Audit audit = Audit::adopt(std::move(full));
  audit.emit("start", {{"pid", 1}});
  ASSERT_TRUE(audit.failing());
  EXPECT_EQ(audit.failure()->sys_errno, ENOSPC);
  EXPECT_EQ(audit.lines_lost(), 0u) << "kept in memory, not lost yet";
  const std::size_t line = 1000;
  const std::size_t fit = Audit::kMaxRetained / (line + 50);
  for (std::size_t i = 0; i < fit + 100; ++i) emit_padded(audit, "deny", line);
  EXPECT_GE(audit.lines_lost(), 100u);
  EXPECT_LE(audit.lines_lost(), 110u);
  audit.flush();
  EXPECT_TRUE(audit.failing());
}

TEST(AuditFailurePipe, ALineThatCannotBeTakenBackIsEndedBeforeTheNext) {
  int ends[2];
  ASSERT_EQ(::pipe2(ends, O_NONBLOCK | O_CLOEXEC), 0);
  UniqueFd reader(ends[0]);
  const int capacity = ::fcntl(ends[1], F_GETPIPE_SZ);
  ASSERT_GT(capacity, 8192);
  Audit audit = Audit::adopt(UniqueFd(ends[1]));
  // The first line fills more than half the pipe; the second, larger than
  // PIPE_BUF, goes in part, then the pipe is full (EAGAIN).
  emit_padded(audit, "start", static_cast<std::size_t>(capacity) / 2 + 100);
  EXPECT_FALSE(audit.failing());
  emit_padded(audit, "grant", static_cast<std::size_t>(capacity) / 2 + 100);
  ASSERT_TRUE(audit.failing());
  EXPECT_EQ(audit.failure()->sys_errno, EAGAIN);
  EXPECT_EQ(audit.lines_lost(), 1u) << "what went out of it stays out; the rest is lost";

  std::string seen;
  char buffer[65536];
  for (ssize_t n; (n = ::read(reader.get(), buffer, sizeof buffer)) > 0;) seen.append(buffer, static_cast<std::size_t>(n));
  audit.flush();
  EXPECT_FALSE(audit.failing());
  for (ssize_t n; (n = ::read(reader.get(), buffer, sizeof buffer)) > 0;) seen.append(buffer, static_cast<std::size_t>(n));
  const auto lines = split_lines(seen);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_TRUE(json::parse(lines[0], nullptr, false).is_object());
  EXPECT_FALSE(json::parse(lines[1], nullptr, false).is_object()) << "the cut line";
  EXPECT_EQ(lines[1].rfind("{\"ts\":", 0), 0u);
  auto resumed = json::parse(lines[2], nullptr, false);
  ASSERT_TRUE(resumed.is_object()) << lines[2];
  EXPECT_EQ(resumed["event"], "audit_resumed");
  EXPECT_EQ(resumed["lines_lost"], 1);
}

TEST_F(AuditFailure, SuppressedLinesAreSummarisedPerUid) {
  Audit audit = open_file();
  const AuditRateLimit::Limits limits{1, 2};
  int admitted = 0;
  for (int i = 0; i < 10; ++i) admitted += audit.admit(65534, limits) ? 1 : 0;
  EXPECT_EQ(admitted, 2);
  EXPECT_TRUE(audit.admit(0, limits)) << "root is not limited";
  EXPECT_EQ(audit.suppressed(), 8u);
  ASSERT_TRUE(audit.flush_deadline()) << "the summary is due at the end of the window";
  audit.emit_suppressed();
  const auto lines = split_lines(file_text(path_));
  ASSERT_EQ(lines.size(), 1u);
  auto summary = json::parse(lines[0]);
  EXPECT_EQ(summary["event"], "suppressed");
  EXPECT_EQ(summary["uid"], 65534);
  EXPECT_EQ(summary["count"], 8);
  EXPECT_LE(summary["since"].get<std::string>(), summary["ts"].get<std::string>());
  EXPECT_FALSE(audit.flush_deadline());
}

}  // namespace
}  // namespace sockbroker::broker
