// Policy address parsing: what bind(2) will receive, and the message for each
// way an address can be written wrong.
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "address.hpp"

namespace sockbroker::policy {
namespace {

Address parse_ok(std::string_view text) {
  auto result = parse_address(text);
  EXPECT_TRUE(result.ok()) << text << ": " << (result.ok() ? "" : result.error().message);
  return result.ok() ? *result : Address{};
}

std::string parse_error(std::string_view text) {
  auto result = parse_address(text);
  EXPECT_FALSE(result.ok()) << text;
  return result.ok() ? std::string("<parsed>") : result.error().message;
}

TEST(Address, Ipv4) {
  Address a = parse_ok("127.0.0.1:8080");
  EXPECT_EQ(a.kind, Address::Kind::inet4);
  EXPECT_EQ(a.family(), AF_INET);
  EXPECT_EQ(a.port(), 8080);
  EXPECT_FALSE(a.is_wildcard());
  EXPECT_FALSE(a.is_unix());
  EXPECT_EQ(a.text, "127.0.0.1:8080");
  ASSERT_EQ(a.length, sizeof(sockaddr_in));
  const auto* sin = reinterpret_cast<const sockaddr_in*>(a.sockaddr_ptr());
  EXPECT_EQ(sin->sin_family, AF_INET);
  EXPECT_EQ(sin->sin_port, htons(8080));
  EXPECT_EQ(sin->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
}

TEST(Address, Ipv4WildcardAndPortBounds) {
  Address any = parse_ok("0.0.0.0:80");
  EXPECT_TRUE(any.is_wildcard());
  EXPECT_EQ(any.port(), 80);
  EXPECT_EQ(parse_ok("10.0.0.1:1").port(), 1);
  EXPECT_EQ(parse_ok("10.0.0.1:65535").port(), 65535);
}

TEST(Address, Ipv6) {
  Address a = parse_ok("[::1]:53");
  EXPECT_EQ(a.kind, Address::Kind::inet6);
  EXPECT_EQ(a.family(), AF_INET6);
  EXPECT_EQ(a.port(), 53);
  EXPECT_FALSE(a.is_wildcard());
  ASSERT_EQ(a.length, sizeof(sockaddr_in6));
  const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(a.sockaddr_ptr());
  EXPECT_EQ(sin6->sin6_family, AF_INET6);
  EXPECT_EQ(sin6->sin6_port, htons(53));
  EXPECT_EQ(std::memcmp(&sin6->sin6_addr, &in6addr_loopback, sizeof(in6_addr)), 0);
  EXPECT_EQ(sin6->sin6_scope_id, 0u);

  EXPECT_TRUE(parse_ok("[::]:443").is_wildcard());
  EXPECT_TRUE(parse_ok("[::0]:443").is_wildcard());
  EXPECT_FALSE(parse_ok("[2001:db8::1]:443").is_wildcard());
}

TEST(Address, Ipv6ScopeResolvesInterface) {
  unsigned lo = if_nametoindex("lo");
  ASSERT_NE(lo, 0u);
  Address a = parse_ok("[fe80::1%lo]:8080");
  const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(a.sockaddr_ptr());
  EXPECT_EQ(sin6->sin6_scope_id, lo);
  EXPECT_EQ(a.port(), 8080);
}

// An address as a supervised bind sends it (the wire form), as the policy
// would spell it: what the broker matches against the policy's sockets.
TEST(Address, FromTheWireAsThePolicySpellsIt) {
  using sockbroker::SocketAddress;
  auto text_of = [](const SocketAddress& in) {
    auto a = sockbroker::policy::address_of(in);
    return a ? a->text : "error: " + a.error().message;
  };
  EXPECT_EQ(text_of({AF_INET, 80, {127, 0, 0, 1}, 0}), "127.0.0.1:80");
  std::vector<std::uint8_t> loopback6(16, 0);
  loopback6[15] = 1;
  EXPECT_EQ(text_of({AF_INET6, 443, loopback6, 0}), "[::1]:443");
  std::vector<std::uint8_t> link_local(16, 0);
  link_local[0] = 0xfe;
  link_local[1] = 0x80;
  link_local[15] = 1;
  EXPECT_EQ(text_of({AF_INET6, 8080, link_local, 7}), "[fe80::1%7]:8080");
  const std::string abstract("\0sockbroker-test", 16);
  EXPECT_EQ(text_of({AF_UNIX, 0, std::vector<std::uint8_t>(abstract.begin(), abstract.end()), 0}), "@sockbroker-test");
  const std::string path = "/run/app.sock";
  EXPECT_EQ(text_of({AF_UNIX, 0, std::vector<std::uint8_t>(path.begin(), path.end()), 0}), "/run/app.sock");
  EXPECT_EQ(text_of({AF_INET, 0, {127, 0, 0, 1}, 0}), "error: not an IPv4 address and port");
}

TEST(Address, UnixPath) {
  Address a = parse_ok("/run/app.sock");
  EXPECT_EQ(a.kind, Address::Kind::unix_path);
  EXPECT_EQ(a.family(), AF_UNIX);
  EXPECT_TRUE(a.is_unix());
  EXPECT_EQ(a.port(), 0);
  EXPECT_FALSE(a.is_wildcard());
  const auto* sun = reinterpret_cast<const sockaddr_un*>(a.sockaddr_ptr());
  EXPECT_EQ(sun->sun_family, AF_UNIX);
  EXPECT_STREQ(sun->sun_path, "/run/app.sock");
  EXPECT_EQ(a.length, offsetof(sockaddr_un, sun_path) + std::strlen("/run/app.sock") + 1);
}

TEST(Address, UnixPathLengthLimit) {
  std::string longest = "/" + std::string(106, 'a');  // 107 bytes: the most sun_path holds with its NUL
  Address a = parse_ok(longest);
  EXPECT_EQ(a.length, offsetof(sockaddr_un, sun_path) + 108);
  EXPECT_EQ(parse_error(longest + "a"), "Unix socket path is 108 bytes; at most 107 fit in sun_path");
}

TEST(Address, Abstract) {
  Address a = parse_ok("@demo");
  EXPECT_EQ(a.kind, Address::Kind::unix_abstract);
  EXPECT_EQ(a.family(), AF_UNIX);
  EXPECT_TRUE(a.is_unix());
  const auto* sun = reinterpret_cast<const sockaddr_un*>(a.sockaddr_ptr());
  EXPECT_EQ(sun->sun_path[0], '\0');
  EXPECT_EQ(std::memcmp(sun->sun_path + 1, "demo", 4), 0);
  // No trailing NUL: it would become part of the name.
  EXPECT_EQ(a.length, offsetof(sockaddr_un, sun_path) + 1 + 4);
  EXPECT_EQ(a.text, "@demo");
}

TEST(Address, Invalid) {
  EXPECT_EQ(parse_error(""), "empty address");
  EXPECT_EQ(parse_error("0.0.0.0:70000"), "port 70000 is out of range 1..65535");
  EXPECT_EQ(parse_error("0.0.0.0:0"), "port 0 is out of range 1..65535");
  EXPECT_EQ(parse_error("0.0.0.0:99999999999999999999"), "port 99999999999999999999 is out of range 1..65535");
  EXPECT_EQ(parse_error("0.0.0.0:"), "missing port after ':'");
  EXPECT_EQ(parse_error("0.0.0.0:+80"), "port \"+80\" is not a decimal number");
  EXPECT_EQ(parse_error("0.0.0.0: 80"), "port \" 80\" is not a decimal number");
  EXPECT_EQ(parse_error("0.0.0.0:0x50"), "port \"0x50\" is not a decimal number");
  EXPECT_EQ(parse_error("0.0.0.0:080"), "port \"080\" has a leading zero");
  EXPECT_EQ(parse_error("0.0.0.0:-1"), "port \"-1\" is not a decimal number");
  EXPECT_EQ(parse_error("0.0.0.0"), "missing port (write \"a.b.c.d:port\", \"[v6addr]:port\", \"/path\" or \"@name\")");
  EXPECT_EQ(parse_error("256.0.0.1:80"),
            "\"256.0.0.1\" is not an IPv4 address (names are not resolved; write the address)");
  EXPECT_EQ(parse_error("127.1:80"), "\"127.1\" is not an IPv4 address (names are not resolved; write the address)");
  EXPECT_EQ(parse_error("localhost:80"),
            "\"localhost\" is not an IPv4 address (names are not resolved; write the address)");
  EXPECT_EQ(parse_error(":80"), "missing address before ':'");
  EXPECT_EQ(parse_error("::1:80"), "IPv6 addresses go in brackets, as in \"[::1]:80\"");
  EXPECT_EQ(parse_error("[::1]"), "missing port after ']'");
  EXPECT_EQ(parse_error("[::1]80"), "missing port after ']'");
  EXPECT_EQ(parse_error("[::1:80"), "missing ']' after the IPv6 address");
  EXPECT_EQ(parse_error("[]:80"), "empty IPv6 address between '[' and ']'");
  EXPECT_EQ(parse_error("[::g]:80"), "\"::g\" is not an IPv6 address");
  EXPECT_EQ(parse_error("[1.2.3.4]:80"), "\"1.2.3.4\" is not an IPv6 address");
  EXPECT_EQ(parse_error("[fe80::1%nosuchif0]:80"), "unknown interface \"nosuchif0\" in the scope");
  EXPECT_EQ(parse_error("[fe80::1%]:80"), "empty interface name after '%'");
  EXPECT_EQ(parse_error("[::1]:65536"), "port 65536 is out of range 1..65535");
  EXPECT_EQ(parse_error("/run/dir/"), "Unix socket path ends in \"/\"; name the socket file");
  EXPECT_EQ(parse_error(std::string_view("/run/a\0b", 8)), "Unix socket path contains a NUL byte");
  EXPECT_EQ(parse_error("run/app.sock"), "Unix socket paths must be absolute (start with \"/\")");
  EXPECT_EQ(parse_error("@"), "abstract socket name after '@' is empty");
  EXPECT_EQ(parse_error("@" + std::string(108, 'x')), "abstract socket name is 108 bytes; at most 107 fit in sun_path");
}

TEST(Address, ErrorsCarryInvalidCode) {
  auto result = parse_address("0.0.0.0:70000");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, -7);  // SOCKBROKER_E_INVALID
}

TEST(Address, EqualityIsByTextAndKind) {
  EXPECT_EQ(parse_ok("0.0.0.0:80"), parse_ok("0.0.0.0:80"));
  EXPECT_FALSE(parse_ok("0.0.0.0:80") == parse_ok("0.0.0.0:81"));
}

}  // namespace
}  // namespace sockbroker::policy
