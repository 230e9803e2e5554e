// Hostile bytes on the control socket against the real sockbrokerd (DESIGN.md,
// "Threat model"): datagrams of every wrong size, hostile segment tables,
// nesting and pointer amplification, wrong versions, kinds and names. Every
// case ends with expect_still_serving() (adversarial.hpp).
#include "adversarial.hpp"

namespace {

using namespace sbadv;
// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using Adversarial = sbtest::BrokerTest;

// ---------------------------------------------------------------------------
// Datagram sizes

// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).

TEST_F(Adversarial, EmptyDatagramIsABadRequest) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  // On SOCK_SEQPACKET a zero-byte read is also how end of stream looks: the
  // broker must tell them apart, answer this one, and hang up.
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, {}, "empty datagram"));
  auto bad = broker->wait_for_events("bad_request");
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_EQ(bad[0]["peer"]["uid"], 0);
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, Exactly4KiBOfGarbageIsRejected) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  std::mt19937 random(4096);
  Bytes garbage(proto::kMaxDatagram);
  for (auto& b : garbage) b = static_cast<std::byte>(random());
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, garbage, "segment"));
  // Garbage that passes the segment-count check: one segment of random size.
  std::memset(garbage.data(), 0, 4);
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, garbage, "malformed message"));
  Bytes ones(proto::kMaxDatagram, std::byte{0xff});
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, ones, "segment"));
  Bytes zeros(proto::kMaxDatagram, std::byte{0});
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, zeros, "trailing bytes"));
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, ValidMessagePaddedTo4KiBIsRejectedForTrailingBytes) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Bytes padded = acquire_request("nosuch");
  ASSERT_LT(padded.size(), proto::kMaxDatagram);
  padded.resize(proto::kMaxDatagram, std::byte{0});
  // The segment table says where the message ends; what follows is not ignored.
  EXPECT_EQ(proto::decode_request(padded).error().message, "trailing bytes after the message");
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, padded, "trailing bytes after the message"));
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, ValidMessageWhoseSegmentFillsExactly4KiBIsServed) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  // The padding inside the segment: a valid message of exactly the limit.
  Segment s = acquire_segment("nosuch");
  while (8 + (s.size() + 1) * 8 <= proto::kMaxDatagram) s.add(0);
  Bytes full = s.message();
  ASSERT_EQ(full.size(), proto::kMaxDatagram);
  ASSERT_TRUE(proto::decode_request(full).ok());
  UniqueFd conn = connect_control(broker->control());
  ASSERT_EQ(send_raw(conn.get(), full), 0);
  // Decoded: an ordinary answer (no such socket), and the connection stays open.
  EXPECT_TRUE(is_failure(receive(conn.get()), proto::ErrorCode::unknown_socket, "nosuch"));
  ASSERT_EQ(send_raw(conn.get(), full), 0);
  EXPECT_TRUE(is_failure(receive(conn.get()), proto::ErrorCode::unknown_socket, "nosuch"));
  conn.reset();
  EXPECT_TRUE(broker->wait_for_events("bad_request", 0).empty());
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, FourKiBPlusOneIsTruncatedAndRejected) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Segment s = acquire_segment("nosuch");
  while (8 + s.size() * 8 < proto::kMaxDatagram) s.add(0);
  Bytes one_more = s.message();
  one_more.push_back(std::byte{0});
  ASSERT_EQ(one_more.size(), proto::kMaxDatagram + 1);
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, one_more, "larger than 4096 bytes"));
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, SixtyFourKiBIsRejectedOrRefusedToTheSender) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Bytes big(64 * 1024, std::byte{0x5a});
  UniqueFd conn = connect_control(broker->control());
  int err = send_raw(conn.get(), big);
  if (err == 0) {
    EXPECT_TRUE(rejected_then_hung_up(conn.get(), "larger than 4096 bytes"));
  } else {
    // Larger than the sender's socket buffer: the attacker's own send fails.
    EXPECT_EQ(err, EMSGSIZE) << std::strerror(err);
  }
  conn.reset();
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, UnalignedPayloadIsRejected) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Bytes valid = acquire_request("nosuch");
  Bytes shifted{std::byte{0}};
  shifted.insert(shifted.end(), valid.begin(), valid.end());
  ASSERT_NE(shifted.size() % 8, 0u);
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, shifted, "not whole 8-byte words"));
  // Shifted and cut back to whole words: the segment table is now garbage.
  shifted.resize(valid.size());
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, shifted, ""));
  expect_still_serving(*broker, baseline);
}

// ---------------------------------------------------------------------------
// Hostile segment tables

TEST_F(Adversarial, HugeSegmentCountIsRejected) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Segment s = acquire_segment("nosuch");
  // 0xffffffff is "count - 1": Cap'n Proto 0.9 would wrap it to one segment.
  for (std::uint32_t count_minus_one : {0xffffffffU, 0x7fffffffU, 511U}) {
    EXPECT_TRUE(rejected_on_fresh_connection(*broker, s.with_table({count_minus_one, static_cast<std::uint32_t>(s.size())}),
                                             "more than one segment"))
        << count_minus_one;
  }
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, SegmentSizeBeyondTheDatagramIsRejected) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Segment s = acquire_segment("nosuch");
  for (std::uint32_t words : {static_cast<std::uint32_t>(s.size() + 1), 512U, 0x1fffffffU, 0xffffffffU}) {
    EXPECT_TRUE(rejected_on_fresh_connection(*broker, s.with_table({0, words}), "malformed message")) << words;
  }
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, MoreThanOneSegmentIsRejected) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Segment s = acquire_segment("nosuch");
  s.add(0);  // a second segment of one word, made of the last word
  auto first = static_cast<std::uint32_t>(s.size() - 1);
  Bytes two = s.with_table({1, first, 1});
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, two, "more than one segment"));
  expect_still_serving(*broker, baseline);
}

// ---------------------------------------------------------------------------
// Depth and amplification

// A Request whose body is a chain of `depth` structs, each only a pointer to
// the next: one word per level.
Bytes nested_request(int depth) {
  Segment s;
  s.add(struct_pointer(0, 1, 1, 1));
  s.add(header_word(proto::kProtocolVersion, 0));
  std::size_t slot = s.add(0);
  for (int i = 0; i < depth; ++i) {
    std::size_t level = s.add(0);
    s.set(slot, struct_pointer(slot, level, 0, 1));
    slot = level;
  }
  return s.message();
}

TEST_F(Adversarial, NestingDepth1000CannotFitAndIsRejectedBySize) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Bytes deep = nested_request(1000);
  // Every level costs at least one word: 1000 of them are nearly twice the limit.
  ASSERT_GT(deep.size(), proto::kMaxDatagram + 3000);
  EXPECT_NE(proto::decode_request(deep).error().message.find("exceeds the 4096-byte limit"), std::string::npos);
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, deep, "larger than 4096 bytes"));
  // The deepest chain that fits is not followed: the decoder reads the one
  // path the schema names and finds a struct where the name's text should be.
  Bytes fits = nested_request(500);
  ASSERT_LE(fits.size(), proto::kMaxDatagram);
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, fits, "malformed message"));
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, PointerAmplificationStopsAtTheTraversalLimit) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);

  // What a request can amplify: Request has one body pointer, Acquire one
  // Text. So make the root struct as large as a datagram allows (501 words)
  // and point its body back at itself: reading the root and then the body
  // reads 1002 words from a 503-word message, past the 512-word limit.
  constexpr std::uint16_t kPointers = 500;
  Segment loop;
  loop.add(struct_pointer(0, 1, 1, kPointers));
  loop.add(header_word(proto::kProtocolVersion, 0));
  std::size_t body = loop.add(0);
  for (int i = 1; i < kPointers; ++i) loop.add(0);
  loop.set(body, struct_pointer(body, 1, 1, kPointers));
  Bytes amplified = loop.message();
  ASSERT_LE(amplified.size(), proto::kMaxDatagram);
  EXPECT_NE(proto::decode_request(amplified).error().message.find("traversal limit"), std::string::npos);
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, amplified, "traversal limit"));

  // A list of 400 pointers to one struct, hung on a pointer field this
  // version does not know: never traversed, so it costs nothing, and the
  // request is answered as what it is (an acquire of "nosuch").
  Segment fan;
  fan.add(struct_pointer(0, 1, 1, 1));
  fan.add(header_word(proto::kProtocolVersion, 0));
  fan.add(struct_pointer(2, 3, 1, 2));  // Acquire with a second, unknown pointer
  fan.add(0);
  fan.add(0);  // 4: name
  fan.add(0);  // 5: unknown
  fan.add_text(4, "nosuch");
  std::size_t target = fan.add(0);
  std::size_t list = fan.size();
  for (int i = 0; i < 400; ++i) fan.add(struct_pointer(list + static_cast<std::size_t>(i), target, 1, 0));
  fan.set(5, list_pointer(5, list, kPointerElements, 400));
  Bytes fanned = fan.message();
  ASSERT_LE(fanned.size(), proto::kMaxDatagram);
  UniqueFd conn = connect_control(broker->control());
  ASSERT_EQ(send_raw(conn.get(), fanned), 0);
  EXPECT_TRUE(is_failure(receive(conn.get()), proto::ErrorCode::unknown_socket, "nosuch"));
  conn.reset();
  expect_still_serving(*broker, baseline);
}

// ---------------------------------------------------------------------------
// Versions, kinds and names

TEST_F(Adversarial, WrongProtocolVersionIsRejectedNamingBoth) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  // "web" is a socket root would be granted: a version slip must not grant it.
  for (std::uint16_t version : {0, 2, 0xffff}) {
    EXPECT_TRUE(rejected_on_fresh_connection(*broker, acquire_message("web", true, version),
                                             "protocol version " + std::to_string(version) + ", expected 1"));
  }
  EXPECT_TRUE(broker->wait_for_events("grant", 0).empty());
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, UnknownRequestKindIsRejected) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  for (std::uint16_t kind : {8, 9, 0xffff}) {  // 4 is status, 5 acquireAddress, 6 watch, 7 upgrade
    EXPECT_TRUE(rejected_on_fresh_connection(*broker, acquire_message("web", true, proto::kProtocolVersion, kind),
                                             "unknown request kind " + std::to_string(kind)));
  }
  EXPECT_TRUE(broker->wait_for_events("grant", 0).empty());
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, SocketNameOf129CharactersIsRejected) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  // The encoder refuses it; a hostile client does not use the encoder.
  EXPECT_FALSE(proto::encode_request(proto::Request{proto::AcquireRequest{std::string(129, 'a'), 0, false}},
                                     proto::DatagramBuffer{}.span())
                   .ok());
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, acquire_message(std::string(129, 'a')), "longer than 128 bytes"));
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, acquire_message(std::string(4000, 'a')), "longer than 128 bytes"));
  // 128 is the limit itself: a well-formed request for a socket that does not exist.
  UniqueFd conn = connect_control(broker->control());
  ASSERT_EQ(send_raw(conn.get(), acquire_message(std::string(128, 'a'))), 0);
  EXPECT_TRUE(is_failure(receive(conn.get()), proto::ErrorCode::unknown_socket, std::string(128, 'a')));
  conn.reset();
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, NamesWithNulSlashColonOrNoTerminatorAreRejected) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  using namespace std::string_literals;
  // "web\0evil" read as a C string is "web", which root would be granted.
  for (const std::string& name : {"web\0evil"s, "\0web"s, "a/b"s, "../web"s, "a:b"s, "web:web"s, "web\n"s, " web"s}) {
    EXPECT_TRUE(rejected_on_fresh_connection(*broker, acquire_message(name), "characters outside"))
        << testing::PrintToString(name);
  }
  EXPECT_TRUE(rejected_on_fresh_connection(*broker, acquire_message("web", false), "malformed message"));
  // Revoke, for administrators (root here), checks its name the same way.
  for (const std::string& name : {"web\0x"s, "a/b"s, "a:b"s}) {
    Segment s;
    s.add(struct_pointer(0, 1, 1, 1));
    s.add(header_word(proto::kProtocolVersion, 3));
    s.add(struct_pointer(2, 3, 0, 1));
    s.add(0);
    s.add_text(3, name);
    EXPECT_TRUE(rejected_on_fresh_connection(*broker, s.message(), "is not a socket name"))
        << testing::PrintToString(name);
  }
  EXPECT_TRUE(broker->wait_for_events("grant", 0).empty());
  EXPECT_TRUE(broker->wait_for_events("revoke", 0).empty());
  expect_still_serving(*broker, baseline);
}

}  // namespace
