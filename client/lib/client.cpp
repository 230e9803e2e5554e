// The C++ API (include/sockbroker/client.hpp).
#include <sockbroker/client.hpp>

#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <string_view>

#include "printable.hpp"
#include "codec.hpp"
#include "control_path.hpp"
#include "connection.hpp"

namespace sockbroker {
namespace {


// Guards list pagination against a broker that keeps answering "more".
constexpr int kMaxListPages = 4096;

Error failure_error(const proto::Failure& failure) {
  return Error{detail::error_code_of(failure.code), 0, failure.message};
}

Error unexpected_reply() { return Error{SOCKBROKER_E_PROTOCOL, 0, "the broker answered with the wrong kind of reply"}; }

}  // namespace

// Lets the one-shot helpers build a Client without a public constructor.
struct ClientAccess {
  static Client make(UniqueFd conn, std::string path) {
    return Client(std::move(conn), std::move(path), static_cast<int>(::getpid()));
  }
  static UniqueFd& connection(Client& client) { return client.conn_; }
  static int& owner(Client& client) { return client.owner_; }
};

std::string resolve_control_path(std::string_view explicit_path) {
  if (!explicit_path.empty()) return std::string(explicit_path);
  if (const char* env = std::getenv("SOCKBROKER_CONTROL"); env != nullptr && *env != '\0') return env;
  return kDefaultControlPath;
}

static_assert(std::string_view(kDefaultControlPath) == kDefaultControlSocket,
              "the public default control path and the daemon's must agree");

Result<Client> Client::connect(std::string_view control) {
  std::string path = resolve_control_path(control);
  auto fd = detail::connect_control(path);
  if (!fd) return std::move(fd).error();
  return ClientAccess::make(std::move(*fd), std::move(path));
}

namespace {

// One exchange, retried once on a fresh connection if the broker had dropped
// the idle one (it does so after request_timeout_ms).
Result<detail::Exchanged> exchange_with_retry(Client& client, const proto::Request& request, int fd_to_send) {
  UniqueFd& conn = ClientAccess::connection(client);
  int& owner = ClientAccess::owner(client);
  const int self = static_cast<int>(::getpid());
  if (conn && owner == self) {
    auto first = detail::exchange(conn.get(), request, fd_to_send);
    if (first || !detail::connection_lost(first.error())) return first;
  }
  // A fresh connection: the old one was dropped, or belongs to the parent
  // this process was forked from (the broker would refuse it this request).
  auto fresh = detail::connect_control(client.control_path());
  if (!fresh) return std::move(fresh).error();
  conn = std::move(*fresh);
  owner = self;
  return detail::exchange(conn.get(), request, fd_to_send);
}

Result<Grant> to_grant(Result<detail::Exchanged> exchanged) {
  if (!exchanged) return std::move(exchanged).error();
  if (auto* failure = std::get_if<proto::Failure>(&exchanged->reply)) return failure_error(*failure);
  auto* grant = std::get_if<proto::Grant>(&exchanged->reply);
  if (grant == nullptr) return unexpected_reply();
  return Grant{std::move(exchanged->fd), std::move(grant->name), to_string(grant->type), grant->family,
               std::move(grant->address)};
}

Result<proto::Request> acquire_request(std::string_view name, int flags, bool with_netns) {
  if (!valid_socket_name(name)) {
    return Error{SOCKBROKER_E_INVALID, EINVAL,
                 sockbroker::quoted(name) + " is not a socket name (1-" + std::to_string(kMaxNameLength) +
                     " characters of A-Z a-z 0-9 _ . -)"};
  }
  if (flags != 0) return Error{SOCKBROKER_E_INVALID, EINVAL, "unknown flags " + std::to_string(flags)};
  return proto::Request{proto::AcquireRequest{std::string(name), 0, with_netns}};
}

}  // namespace

Result<Grant> Client::acquire(std::string_view name, int flags) {
  auto request = acquire_request(name, flags, false);
  if (!request) return std::move(request).error();
  return to_grant(exchange_with_retry(*this, *request, -1));
}

Result<Grant> Client::acquire_in_netns(std::string_view name, int netns_fd, int flags) {
  if (netns_fd < 0) {
    return Error{SOCKBROKER_E_INVALID, EBADF,
                 "socket \"" + std::string(name) + "\": no network namespace descriptor given (" +
                     std::to_string(netns_fd) + ")"};
  }
  auto request = acquire_request(name, flags, true);
  if (!request) return std::move(request).error();
  auto exchanged = exchange_with_retry(*this, *request, netns_fd);
  // EPERM from sendmsg: the connection refuses descriptors (SO_PASSRIGHTS = 0),
  // which the broker sets while its policy has no netns = "request" socket, so
  // the namespace would be ignored anyway. A connection made just before a
  // reload added one keeps refusing: try a fresh one first.
  if (!exchanged && exchanged.error().sys_errno == EPERM) {
    auto fresh = detail::connect_control(control_path());
    if (!fresh) return std::move(fresh).error();
    ClientAccess::connection(*this) = std::move(*fresh);
    ClientAccess::owner(*this) = static_cast<int>(::getpid());
    exchanged = exchange_with_retry(*this, *request, netns_fd);
    if (!exchanged && exchanged.error().sys_errno == EPERM) {
      auto plain = acquire_request(name, flags, false);
      exchanged = exchange_with_retry(*this, *plain, -1);
    }
  }
  return to_grant(std::move(exchanged));
}

Result<Grant> Client::acquire_address(const sockaddr* address, socklen_t length, int type, bool v6only) {
  proto::AcquireAddressRequest request;
  switch (type) {
    case SOCK_STREAM: request.type = SocketType::stream; break;
    case SOCK_DGRAM: request.type = SocketType::datagram; break;
    case SOCK_SEQPACKET: request.type = SocketType::seqpacket; break;
    default: return Error{SOCKBROKER_E_INVALID, EINVAL, "socket type " + std::to_string(type) + " is not served"};
  }
  request.v6only = v6only;
  SocketAddress& out = request.address;
  if (address == nullptr || length < static_cast<socklen_t>(sizeof(sa_family_t))) {
    return Error{SOCKBROKER_E_INVALID, EINVAL, "no address"};
  }
  out.family = address->sa_family;
  switch (address->sa_family) {
    case AF_INET: {
      if (length < static_cast<socklen_t>(sizeof(sockaddr_in))) return Error{SOCKBROKER_E_INVALID, EINVAL, "a short IPv4 address"};
      const auto* sin = reinterpret_cast<const sockaddr_in*>(address);
      out.port = ntohs(sin->sin_port);
      const auto* bytes = reinterpret_cast<const std::uint8_t*>(&sin->sin_addr);
      out.bytes.assign(bytes, bytes + 4);
      break;
    }
    case AF_INET6: {
      if (length < static_cast<socklen_t>(sizeof(sockaddr_in6))) return Error{SOCKBROKER_E_INVALID, EINVAL, "a short IPv6 address"};
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(address);
      out.port = ntohs(sin6->sin6_port);
      out.scope_id = sin6->sin6_scope_id;
      const auto* bytes = reinterpret_cast<const std::uint8_t*>(&sin6->sin6_addr);
      out.bytes.assign(bytes, bytes + 16);
      break;
    }
    case AF_UNIX: {
      const auto* sun = reinterpret_cast<const sockaddr_un*>(address);
      const std::size_t path_bytes = std::min<std::size_t>(length - offsetof(sockaddr_un, sun_path), sizeof sun->sun_path);
      const auto* bytes = reinterpret_cast<const std::uint8_t*>(sun->sun_path);
      out.bytes.assign(bytes, bytes + path_bytes);
      // A path ends at its NUL; an abstract name (leading NUL) is all its bytes.
      if (!out.bytes.empty() && out.bytes[0] != 0) {
        out.bytes.resize(std::find(out.bytes.begin(), out.bytes.end(), 0) - out.bytes.begin());
      }
      break;
    }
    default:
      return Error{SOCKBROKER_E_INVALID, EAFNOSUPPORT,
                   "address family " + std::to_string(address->sa_family) + " is not served (IPv4, IPv6, Unix only)"};
  }
  return to_grant(exchange_with_retry(*this, proto::Request{std::move(request)}, -1));
}

Result<SocketList> Client::list() {
  SocketList out;
  std::uint32_t cursor = 0;
  for (int page = 0; page < kMaxListPages; ++page) {
    auto exchanged = exchange_with_retry(*this, proto::Request{proto::ListRequest{cursor}}, -1);
    if (!exchanged) return std::move(exchanged).error();
    if (auto* failure = std::get_if<proto::Failure>(&exchanged->reply)) return failure_error(*failure);
    auto* listing = std::get_if<proto::Listing>(&exchanged->reply);
    if (listing == nullptr) return unexpected_reply();
    out.admin_view = listing->admin;
    for (auto& entry : listing->entries) {
      out.sockets.push_back(SocketInfo{std::move(entry.name), to_string(entry.type), std::move(entry.address),
                                       std::move(entry.state), std::move(entry.detail), entry.holders,
                                       entry.grants_total, entry.max_grants, entry.reuse_port,
                                       std::move(entry.inodes)});
    }
    if (listing->next_cursor == 0) return out;
    if (listing->next_cursor <= cursor) return Error{SOCKBROKER_E_PROTOCOL, 0, "the broker's listing went backwards"};
    cursor = listing->next_cursor;
  }
  return Error{SOCKBROKER_E_PROTOCOL, 0, "the broker's listing did not end"};
}

Result<std::vector<HolderInfo>> Client::holders() {
  std::vector<HolderInfo> out;
  std::uint32_t cursor = 0;
  for (int page = 0; page < kMaxListPages; ++page) {
    auto exchanged = exchange_with_retry(*this, proto::Request{proto::ListRequest{cursor, true}}, -1);
    if (!exchanged) return std::move(exchanged).error();
    if (auto* failure = std::get_if<proto::Failure>(&exchanged->reply)) return failure_error(*failure);
    auto* listing = std::get_if<proto::Listing>(&exchanged->reply);
    if (listing == nullptr) return unexpected_reply();
    if (!listing->admin) {
      return Error{SOCKBROKER_E_DENIED, EPERM, "which processes hold the sockets: administrators only (root or admin_group)"};
    }
    for (auto& entry : listing->entries) {
      for (auto& row : entry.holder_rows) out.push_back(HolderInfo{entry.name, row.pid, row.uid, std::move(row.unit)});
    }
    if (listing->next_cursor == 0) return out;
    if (listing->next_cursor <= cursor) return Error{SOCKBROKER_E_PROTOCOL, 0, "the broker's listing went backwards"};
    cursor = listing->next_cursor;
  }
  return Error{SOCKBROKER_E_PROTOCOL, 0, "the broker's listing did not end"};
}

namespace {

Result<AdminOutcome> to_outcome(Result<detail::Exchanged> exchanged) {
  if (!exchanged) return std::move(exchanged).error();
  if (auto* failure = std::get_if<proto::Failure>(&exchanged->reply)) return failure_error(*failure);
  auto* outcome = std::get_if<proto::Outcome>(&exchanged->reply);
  if (outcome == nullptr) return unexpected_reply();
  return AdminOutcome{outcome->ok, std::move(outcome->message), std::move(outcome->details),
                      std::move(outcome->failed_sockets)};
}

}  // namespace

Result<AdminOutcome> Client::reload() {
  return to_outcome(exchange_with_retry(*this, proto::Request{proto::ReloadRequest{}}, -1));
}

Result<AdminOutcome> Client::revoke(std::string_view name) {
  if (!valid_socket_name(name)) {
    return Error{SOCKBROKER_E_INVALID, EINVAL, sockbroker::quoted(name) + " is not a socket name"};
  }
  return to_outcome(exchange_with_retry(*this, proto::Request{proto::RevokeRequest{std::string(name)}}, -1));
}

Result<AdminOutcome> Client::upgrade() {
  return to_outcome(exchange_with_retry(*this, proto::Request{proto::UpgradeRequest{}}, -1));
}

Status Client::watch() {
  auto exchanged = exchange_with_retry(*this, proto::Request{proto::WatchRequest{}}, -1);
  if (!exchanged) return std::move(exchanged).error();
  if (auto* failure = std::get_if<proto::Failure>(&exchanged->reply)) return failure_error(*failure);
  if (!std::holds_alternative<proto::Outcome>(exchanged->reply)) return unexpected_reply();
  return Ok{};
}

Result<std::optional<RevokeNotice>> Client::next_notice() {
  if (!conn_) return Error{SOCKBROKER_E_UNAVAILABLE, ENOTCONN, "not connected to the broker"};
  auto notice = detail::receive_notice(conn_.get());
  if (!notice) return std::move(notice).error();
  if (!*notice) return std::optional<RevokeNotice>{};
  return std::optional<RevokeNotice>{RevokeNotice{std::move((*notice)->socket), std::move((*notice)->message)}};
}

Result<BrokerStatus> Client::status() {
  auto exchanged = exchange_with_retry(*this, proto::Request{proto::StatusRequest{}}, -1);
  if (!exchanged) return std::move(exchanged).error();
  if (auto* failure = std::get_if<proto::Failure>(&exchanged->reply)) return failure_error(*failure);
  auto* report = std::get_if<proto::StatusReport>(&exchanged->reply);
  if (report == nullptr) return unexpected_reply();
  BrokerStatus out = std::move(*report);
  // The per-socket rows are the administrator's listing, paged: a status reply
  // must fit one datagram whatever the size of the policy.
  auto sockets = list();
  if (!sockets) return std::move(sockets).error();
  out.sockets = std::move(sockets->sockets);
  return out;
}

Result<Grant> acquire(std::string_view name, std::string_view control) {
  auto client = Client::connect(control);
  if (!client) return std::move(client).error();
  return client->acquire(name);
}

}  // namespace sockbroker
