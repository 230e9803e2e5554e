// Address conflicts between policy sockets, decided the way Linux decides
// EADDRINUSE so that `sockbroker check` catches at edit time what would
// otherwise be a bind_failed at start-up.
#include "conflict.hpp"

#include <netinet/in.h>

#include <cstring>
#include <filesystem>
#include <vector>

namespace sockbroker::policy::detail {
namespace {

// What one socket occupies in one address family: an address, or all of them.
struct Claim {
  int family = AF_UNSPEC;
  bool wildcard = false;
  unsigned char addr[16]{};
  std::uint32_t scope = 0;
};

bool v4_mapped(const in6_addr& a) {
  static constexpr unsigned char prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(a.s6_addr, prefix, sizeof prefix) == 0;
}

// An IPv6 socket with v6only = false also takes IPv4: all of it when bound to
// "::", one address when bound to "::ffff:a.b.c.d".
std::vector<Claim> claims(const SocketSpec& spec) {
  std::vector<Claim> out;
  const Address& address = spec.listen;
  if (address.kind == Address::Kind::inet4) {
    Claim claim{AF_INET, address.is_wildcard(), {}, 0};
    std::memcpy(claim.addr, &reinterpret_cast<const sockaddr_in*>(&address.storage)->sin_addr, 4);
    out.push_back(claim);
  } else if (address.kind == Address::Kind::inet6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&address.storage);
    Claim claim{AF_INET6, address.is_wildcard(), {}, sin6->sin6_scope_id};
    std::memcpy(claim.addr, &sin6->sin6_addr, 16);
    out.push_back(claim);
    if (!spec.v6only && (claim.wildcard || v4_mapped(sin6->sin6_addr))) {
      Claim v4{AF_INET, claim.wildcard, {}, 0};
      std::memcpy(v4.addr, sin6->sin6_addr.s6_addr + 12, 4);
      out.push_back(v4);
    }
  }
  return out;
}

bool overlap(const Claim& a, const Claim& b) {
  if (a.family != b.family) return false;
  if (a.wildcard || b.wildcard) return true;
  return std::memcmp(a.addr, b.addr, sizeof a.addr) == 0 && a.scope == b.scope;
}

std::string normal_path(const std::string& text) { return std::filesystem::path(text).lexically_normal().string(); }

}  // namespace

std::string conflict_key(const SocketSpec& spec) {
  const Address& address = spec.listen;
  switch (address.kind) {
    case Address::Kind::unix_path:
      // The file system is shared across network namespaces: a path conflicts
      // whatever netns says.
      return "path " + normal_path(address.text);
    case Address::Kind::unix_abstract:
      return std::string("abstract ") + (spec.netns == NetnsMode::request ? "request " : "broker ") + address.text;
    case Address::Kind::inet4:
    case Address::Kind::inet6:
      // Type stands for the transport: stream is TCP, datagram UDP, an inet
      // seqpacket SCTP. Different transports have separate port spaces.
      // A request socket and a broker socket never meet: the broker refuses
      // to bind a request socket in its own namespace (broker/grant_plan.cpp),
      // and that is the only namespace broker sockets are in. Two request
      // sockets meet in any namespace both may be granted in. Abstract names
      // are per namespace too (above).
      return "inet " + std::to_string(address.port()) + ' ' + std::to_string(static_cast<int>(spec.type)) +
             (spec.netns == NetnsMode::request ? " request" : " broker");
  }
  return {};
}

bool bindings_conflict(const SocketSpec& a, const SocketSpec& b) {
  if (a.listen.is_unix() || b.listen.is_unix()) return conflict_key(a) == conflict_key(b);
  // Members of one SO_REUSEPORT group share the port by design (the broker,
  // root, creates every member, so the same-uid rule holds).
  if (a.reuse_port && b.reuse_port) return false;
  for (const Claim& x : claims(a)) {
    for (const Claim& y : claims(b)) {
      if (overlap(x, y)) return true;
    }
  }
  return false;
}

}  // namespace sockbroker::policy::detail
