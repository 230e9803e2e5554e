// Parsing the addresses a policy writes into sockaddrs ready for bind(2).
//
// Deliberately strict: no name resolution, no implicit ports, no alternative
// spellings a reviewer could misread (leading zeros, "+80", hex). The broker
// binds exactly what the operator wrote, and `sockbroker check` says why not.
#include "printable.hpp"
#include "address.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <sockbroker/client.h>

#include <cstddef>
#include <cstring>

namespace sockbroker::policy {
namespace {


// sun_path keeps room for the terminating NUL the kernel does not need but
// every tool that prints the path (ss, lsof) expects.
constexpr std::size_t kMaxUnixPath = sizeof(sockaddr_un::sun_path) - 1;

Error invalid(std::string message) { return Error{SOCKBROKER_E_INVALID, 0, std::move(message)}; }

Result<std::uint16_t> parse_port(std::string_view text) {
  if (text.empty()) return invalid("missing port after ':'");
  for (char c : text) {
    if (c < '0' || c > '9') return invalid("port " + sockbroker::quoted(text) + " is not a decimal number");
  }
  if (text.size() > 1 && text.front() == '0') return invalid("port " + sockbroker::quoted(text) + " has a leading zero");
  // More than five digits is out of range whatever they are; checking the
  // length first keeps the arithmetic below from overflowing.
  unsigned long value = 0;
  if (text.size() <= 5) {
    for (char c : text) value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (text.size() > 5 || value < 1 || value > 65535) {
    return invalid("port " + std::string(text) + " is out of range 1..65535");
  }
  return static_cast<std::uint16_t>(value);
}

Result<Address> parse_unix_path(std::string_view text) {
  if (text.find('\0') != std::string_view::npos) return invalid("Unix socket path contains a NUL byte");
  if (text.size() > kMaxUnixPath) {
    return invalid("Unix socket path is " + std::to_string(text.size()) + " bytes; at most " +
                   std::to_string(kMaxUnixPath) + " fit in sun_path");
  }
  if (text.back() == '/') return invalid("Unix socket path ends in \"/\"; name the socket file");
  // The broker walks the path one directory at a time and follows nothing:
  // it must say plainly where the socket goes.
  for (std::size_t start = 1; start <= text.size();) {
    std::size_t end = text.find('/', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view part = text.substr(start, end - start);
    if (part.empty()) return invalid("Unix socket path has an empty component (\"//\"); write it plainly");
    if (part == "." || part == "..") {
      return invalid("Unix socket path has a \"" + std::string(part) + "\" component; write it plainly");
    }
    start = end + 1;
  }
  Address address;
  address.kind = Address::Kind::unix_path;
  auto* sun = reinterpret_cast<sockaddr_un*>(&address.storage);
  sun->sun_family = AF_UNIX;
  std::memcpy(sun->sun_path, text.data(), text.size());
  address.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + text.size() + 1);
  address.text = std::string(text);
  return address;
}

Result<Address> parse_unix_abstract(std::string_view text) {
  std::string_view name = text.substr(1);
  if (name.empty()) return invalid("abstract socket name after '@' is empty");
  if (name.find('\0') != std::string_view::npos) return invalid("abstract socket name contains a NUL byte");
  // The leading NUL takes one byte of sun_path.
  if (name.size() > sizeof(sockaddr_un::sun_path) - 1) {
    return invalid("abstract socket name is " + std::to_string(name.size()) + " bytes; at most " +
                   std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " fit in sun_path");
  }
  Address address;
  address.kind = Address::Kind::unix_abstract;
  auto* sun = reinterpret_cast<sockaddr_un*>(&address.storage);
  sun->sun_family = AF_UNIX;
  sun->sun_path[0] = '\0';
  std::memcpy(sun->sun_path + 1, name.data(), name.size());
  // Abstract names are length-delimited, not NUL-terminated: a trailing NUL
  // would become part of the name and no client would find it.
  address.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  address.text = std::string(text);
  return address;
}

Result<Address> parse_inet6(std::string_view text) {
  std::size_t close = text.find(']');
  if (close == std::string_view::npos) return invalid("missing ']' after the IPv6 address");
  std::string_view inside = text.substr(1, close - 1);
  std::string_view rest = text.substr(close + 1);
  if (rest.empty() || rest.front() != ':') return invalid("missing port after ']'");

  std::string_view host = inside;
  std::string_view scope;
  bool has_scope = false;
  if (std::size_t percent = inside.find('%'); percent != std::string_view::npos) {
    host = inside.substr(0, percent);
    scope = inside.substr(percent + 1);
    has_scope = true;
  }
  if (host.empty()) return invalid("empty IPv6 address between '[' and ']'");

  Address address;
  address.kind = Address::Kind::inet6;
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
  sin6->sin6_family = AF_INET6;
  std::string host_z(host);  // inet_pton wants a NUL-terminated string
  if (::inet_pton(AF_INET6, host_z.c_str(), &sin6->sin6_addr) != 1) {
    return invalid(sockbroker::quoted(host) + " is not an IPv6 address");
  }
  if (has_scope) {
    if (scope.empty()) return invalid("empty interface name after '%'");
    if (scope.size() >= IF_NAMESIZE) return invalid("unknown interface " + sockbroker::quoted(scope) + " in the scope");
    std::string scope_z(scope);
    unsigned index = ::if_nametoindex(scope_z.c_str());
    if (index == 0) return invalid("unknown interface " + sockbroker::quoted(scope) + " in the scope");
    sin6->sin6_scope_id = index;
  }
  auto port = parse_port(rest.substr(1));
  if (!port) return std::move(port).error();
  sin6->sin6_port = htons(*port);
  address.length = sizeof(sockaddr_in6);
  address.text = std::string(text);
  return address;
}

Result<Address> parse_inet4(std::string_view text) {
  std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return invalid("missing port (write \"a.b.c.d:port\", \"[v6addr]:port\", \"/path\" or \"@name\")");
  }
  std::string_view host = text.substr(0, colon);
  if (host.find(':') != std::string_view::npos) {
    return invalid("IPv6 addresses go in brackets, as in \"[::1]:80\"");
  }
  if (host.empty()) return invalid("missing address before ':'");

  Address address;
  address.kind = Address::Kind::inet4;
  auto* sin = reinterpret_cast<sockaddr_in*>(&address.storage);
  sin->sin_family = AF_INET;
  std::string host_z(host);
  // inet_pton (unlike inet_aton) takes only the four-part dotted decimal form,
  // so "127.1" or "0x7f.0.0.1" cannot slip through meaning something else.
  if (::inet_pton(AF_INET, host_z.c_str(), &sin->sin_addr) != 1) {
    return invalid(sockbroker::quoted(host) + " is not an IPv4 address (names are not resolved; write the address)");
  }
  auto port = parse_port(text.substr(colon + 1));
  if (!port) return std::move(port).error();
  sin->sin_port = htons(*port);
  address.length = sizeof(sockaddr_in);
  address.text = std::string(text);
  return address;
}

}  // namespace

int Address::family() const noexcept {
  switch (kind) {
    case Kind::inet4:
      return AF_INET;
    case Kind::inet6:
      return AF_INET6;
    case Kind::unix_path:
    case Kind::unix_abstract:
      return AF_UNIX;
  }
  return AF_UNSPEC;
}

std::uint16_t Address::port() const noexcept {
  switch (kind) {
    case Kind::inet4:
      return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
    case Kind::inet6:
      return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
    case Kind::unix_path:
    case Kind::unix_abstract:
      return 0;
  }
  return 0;
}

bool Address::is_wildcard() const noexcept {
  switch (kind) {
    case Kind::inet4:
      return reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr.s_addr == htonl(INADDR_ANY);
    case Kind::inet6: {
      const auto& addr = reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr;
      return std::memcmp(&addr, &in6addr_any, sizeof addr) == 0;
    }
    case Kind::unix_path:
    case Kind::unix_abstract:
      return false;
  }
  return false;
}

Result<Address> address_of(const SocketAddress& in) {
  Address address;
  char host[INET6_ADDRSTRLEN] = {};
  switch (in.family) {
    case AF_INET: {
      if (in.bytes.size() != 4 || in.port == 0) return invalid("not an IPv4 address and port");
      address.kind = Address::Kind::inet4;
      auto* sin = reinterpret_cast<sockaddr_in*>(&address.storage);
      sin->sin_family = AF_INET;
      sin->sin_port = htons(in.port);
      std::memcpy(&sin->sin_addr, in.bytes.data(), 4);
      address.length = sizeof(sockaddr_in);
      ::inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
      address.text = std::string(host) + ":" + std::to_string(in.port);
      return address;
    }
    case AF_INET6: {
      if (in.bytes.size() != 16 || in.port == 0) return invalid("not an IPv6 address and port");
      address.kind = Address::Kind::inet6;
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
      sin6->sin6_family = AF_INET6;
      sin6->sin6_port = htons(in.port);
      std::memcpy(&sin6->sin6_addr, in.bytes.data(), 16);
      sin6->sin6_scope_id = in.scope_id;
      address.length = sizeof(sockaddr_in6);
      ::inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
      address.text = "[" + std::string(host) + (in.scope_id != 0 ? "%" + std::to_string(in.scope_id) : "") +
                     "]:" + std::to_string(in.port);
      return address;
    }
    case AF_UNIX: {
      std::string path(reinterpret_cast<const char*>(in.bytes.data()), in.bytes.size());
      if (!path.empty() && path[0] == '\0') return parse_unix_abstract("@" + path.substr(1));
      if (const auto nul = path.find('\0'); nul != std::string::npos) path.resize(nul);
      if (path.empty() || path[0] != '/') return invalid("a Unix path must be absolute");
      return parse_unix_path(path);
    }
    default:
      return invalid("address family " + std::to_string(in.family));
  }
}

Result<Address> parse_address(std::string_view text) {
  if (text.empty()) return invalid("empty address");
  switch (text.front()) {
    case '/':
      return parse_unix_path(text);
    case '@':
      return parse_unix_abstract(text);
    case '[':
      return parse_inet6(text);
    default:
      // An IP address never contains '/': this is a relative path, which
      // would resolve against the broker's working directory.
      if (text.find('/') != std::string_view::npos)
        return invalid("Unix socket paths must be absolute (start with \"/\")");
      return parse_inet4(text);
  }
}

}  // namespace sockbroker::policy
