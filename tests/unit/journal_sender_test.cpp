// The journal's native protocol as broker/journal_sender.cpp sends it, read
// from a datagram socket standing in for journald's: "NAME=value\n", or for a
// value with a newline "NAME\n" + its length (64-bit little-endian) + value
// + "\n". Then what a journald that does not read, or is not there, makes
// of a send: an errno at once, never a wait.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fake_journald.hpp"
#include "journal_sender.hpp"

namespace {

using sockbroker::broker::JournalSender;
using sbtest::FakeJournald;

TEST(JournalSender, SendsFieldsInTheNativeProtocol) {
  FakeJournald journald;
  ASSERT_TRUE(journald.ok());
  auto sender = JournalSender::open(journald.path());
  ASSERT_TRUE(sender) << sender.error().message;
  ASSERT_EQ(sender->send({"MESSAGE={\"event\":\"grant\"}", "SOCKBROKER_PEER_EXE=/usr/bin/two\nlines", "PRIORITY=6"}), 0);

  std::string expected = "MESSAGE={\"event\":\"grant\"}\nSOCKBROKER_PEER_EXE\n";
  const char length[8] = {18, 0, 0, 0, 0, 0, 0, 0};  // "/usr/bin/two\nlines" is 18 bytes, little-endian
  expected.append(length, sizeof length);
  expected += "/usr/bin/two\nlines\nPRIORITY=6\n";
  EXPECT_EQ(journald.receive(), expected);
}

TEST(JournalSender, AFieldWithoutANameIsRefusedAndNothingIsSent) {
  FakeJournald journald;
  ASSERT_TRUE(journald.ok());
  auto sender = JournalSender::open(journald.path());
  ASSERT_TRUE(sender);
  EXPECT_EQ(sender->send({"MESSAGE=fine", "no equals sign"}), EINVAL);
  EXPECT_EQ(sender->send({"=no name"}), EINVAL);
  EXPECT_EQ(journald.receive(), "");
}

// net.unix.max_dgram_qlen entries wait unread; the next send fails with
// EAGAIN at once, and goes through once one is read.
TEST(JournalSender, AFullQueueIsEagainNotAWait) {
  FakeJournald journald;
  ASSERT_TRUE(journald.ok());
  auto sender = JournalSender::open(journald.path());
  ASSERT_TRUE(sender);
  int sent = 0;
  int err = 0;
  while (sent < 100000 && (err = sender->send({"MESSAGE=entry " + std::to_string(sent)})) == 0) ++sent;
  EXPECT_EQ(err, EAGAIN) << std::strerror(err);
  EXPECT_GT(sent, 0);
  EXPECT_EQ(journald.receive(), "MESSAGE=entry 0\n");
  EXPECT_EQ(sender->send({"MESSAGE=after"}), 0);
}

TEST(JournalSender, NoJournaldIsAnErrorNotASilentDrop) {
  FakeJournald journald;
  ASSERT_TRUE(journald.ok());
  auto sender = JournalSender::open(journald.path() + ".none");
  ASSERT_TRUE(sender);
  EXPECT_EQ(sender->send({"MESSAGE=lost?"}), ENOENT);
  auto closed = JournalSender::open(journald.path());
  ASSERT_TRUE(closed);
  journald.close();  // the path stays, nobody listens: a journald that died
  EXPECT_EQ(closed->send({"MESSAGE=lost?"}), ECONNREFUSED);
}

TEST(JournalSender, APathTooLongForAUnixAddressIsRefused) {
  auto sender = JournalSender::open("/" + std::string(200, 'x'));
  ASSERT_FALSE(sender);
  EXPECT_EQ(sender.error().sys_errno, ENAMETOOLONG);
}

}  // namespace
