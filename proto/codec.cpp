#include "codec.hpp"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>
#include <sys/socket.h>

#include <sockbroker/client.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "printable.hpp"
#include "sockbroker.capnp.h"

namespace sockbroker::proto {
namespace {

static_assert(kWordsPerDatagram * sizeof(capnp::word) == kMaxDatagram);

// Security limits, not tuning: a datagram can hold at most kWordsPerDatagram
// words, so a message that asks to traverse more is amplifying pointers, and our
// schema nests four levels deep at most.
capnp::ReaderOptions reader_options() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = kWordsPerDatagram;
  options.nestingLimit = 8;
  return options;
}

Error protocol_error(std::string message) {
  return Error{SOCKBROKER_E_PROTOCOL, 0, std::move(message)};
}

static_assert(static_cast<int>(wire::SocketType::SEQPACKET) == static_cast<int>(SocketType::seqpacket));
static_assert(static_cast<int>(wire::ErrorCode::SYSTEM) == static_cast<int>(ErrorCode::system));

Result<SocketType> socket_type_from_wire(wire::SocketType type) {
  switch (type) {
    case wire::SocketType::STREAM: return SocketType::stream;
    case wire::SocketType::DATAGRAM: return SocketType::datagram;
    case wire::SocketType::SEQPACKET: return SocketType::seqpacket;
  }
  return protocol_error("unknown socket type " + std::to_string(static_cast<unsigned>(type)));
}

wire::SocketType socket_type_to_wire(SocketType type) { return static_cast<wire::SocketType>(type); }

std::string text(capnp::Text::Reader reader) { return std::string(reader.cStr(), reader.size()); }

// The whole string, embedded NULs included (a std::string is NUL-terminated
// at size(), as Text::Reader requires); passing it as const char* would cut
// "we\0b" to "we", a different socket.
capnp::Text::Reader as_text(const std::string& s) { return capnp::Text::Reader(s.data(), s.size()); }

// Runs the reading half inside the one try block that may see kj::Exception.
// The flat array must be word-aligned and whole words.
template <class Fn>
auto read_message(std::span<const std::byte> datagram, Fn&& fn) -> decltype(fn(std::declval<capnp::MessageReader&>())) {
  if (datagram.empty()) return protocol_error("empty datagram");
  if (datagram.size() > kMaxDatagram) {
    return protocol_error("datagram of " + std::to_string(datagram.size()) + " bytes exceeds the " +
                          std::to_string(kMaxDatagram) + "-byte limit");
  }
  if (datagram.size() % sizeof(capnp::word) != 0) {
    return protocol_error("datagram of " + std::to_string(datagram.size()) + " bytes is not whole 8-byte words");
  }
  // Cap'n Proto reads words in place; copy only when the caller's buffer is not aligned.
  alignas(capnp::word) std::array<std::byte, kMaxDatagram> aligned;
  const std::byte* start = datagram.data();
  if (reinterpret_cast<std::uintptr_t>(start) % alignof(capnp::word) != 0) {
    std::memcpy(aligned.data(), start, datagram.size());
    start = aligned.data();
  }
  // One segment only: our encoder never writes more into 4 KiB, and Cap'n Proto
  // 0.9 computes "count - 1 + 1" in 32 bits, so 0xffffffff would wrap to one.
  std::uint32_t segments_minus_one;
  std::memcpy(&segments_minus_one, start, sizeof segments_minus_one);
  if (segments_minus_one != 0) return protocol_error("message has more than one segment");
  kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word*>(start),
                                        datagram.size() / sizeof(capnp::word));
  try {
    capnp::FlatArrayMessageReader reader(words, reader_options());
    if (reader.getEnd() != words.end()) return protocol_error("trailing bytes after the message");
    return fn(reader);
  } catch (const kj::Exception& e) {
    // Cap'n Proto's description may quote the client's bytes.
    return protocol_error("malformed message: " + printable(e.getDescription().cStr()));
  }
}

Error version_error(std::uint16_t theirs) {
  return protocol_error("protocol version " + std::to_string(theirs) + ", expected " +
                        std::to_string(kProtocolVersion));
}

Result<std::size_t> finish(capnp::MessageBuilder& message, std::span<std::byte> out) {
  std::size_t words = capnp::computeSerializedSizeInWords(message);
  std::size_t bytes = words * sizeof(capnp::word);
  if (bytes > out.size() || bytes > kMaxDatagram) {
    return Error{SOCKBROKER_E_INVALID, 0,
                 "message of " + std::to_string(bytes) + " bytes exceeds the " + std::to_string(kMaxDatagram) +
                     "-byte datagram limit"};
  }
  if (message.getSegmentsForOutput().size() != 1) {
    return Error{SOCKBROKER_E_INVALID, 0, "message of " + std::to_string(bytes) + " bytes needs more than one segment"};
  }
  kj::ArrayOutputStream stream(kj::arrayPtr(reinterpret_cast<kj::byte*>(out.data()), out.size()));
  capnp::writeMessage(stream, message);
  return bytes;
}

// Requests are small and bounded: the longest, an acquire or a revoke of a
// kMaxNameLength name, is 22 words. So each is built in a fresh stack segment
// of this many words, cheap to zero (finish() refuses a message that would
// need a second segment, which decode_request() would refuse).
constexpr std::size_t kRequestSegmentWords = 64;

// Status: every list and text is checked against the bound the encoder keeps,
// so a Status that decodes is one our broker could have sent.
Result<Reply> decode_status(wire::Status::Reader in) {
  auto too_long = [](const char* what, std::size_t size, std::size_t limit) {
    return protocol_error("status reply: " + std::string(what) + " of " + std::to_string(size) +
                          " bytes exceeds the limit of " + std::to_string(limit));
  };
  // Each text read once: every read counts against the traversal limit,
  // which a full Status comes close to.
  const auto version = in.getVersion();
  const auto last_reload_message = in.getLastReloadMessage();
  const auto audit_failure = in.getAuditFailure();
  const auto audit_error = in.getAuditError();
  if (version.size() > kMaxStatusTextLength) return too_long("version", version.size(), kMaxStatusTextLength);
  if (last_reload_message.size() > kMaxStatusTextLength) {
    return too_long("last reload message", last_reload_message.size(), kMaxStatusTextLength);
  }
  if (audit_failure.size() > kMaxStatusWordLength) {
    return too_long("audit failure mode", audit_failure.size(), kMaxStatusWordLength);
  }
  if (audit_error.size() > kMaxStatusAuditErrorLength) {
    return too_long("audit error", audit_error.size(), kMaxStatusAuditErrorLength);
  }
  auto paths = in.getPolicyPaths();
  if (paths.size() > kMaxStatusPaths) {
    return protocol_error("status reply: " + std::to_string(paths.size()) + " policy paths, more than " +
                          std::to_string(kMaxStatusPaths));
  }
  auto denials = in.getDenials();
  if (denials.size() > kMaxStatusReasons) {
    return protocol_error("status reply: " + std::to_string(denials.size()) + " denial reasons, more than " +
                          std::to_string(kMaxStatusReasons));
  }
  StatusReport out;
  out.version = text(version);
  out.pid = in.getPid();
  out.start_time = in.getStartTime();
  out.uptime_seconds = in.getUptimeSeconds();
  out.policy_generation = in.getPolicyGeneration();
  for (auto path : paths) {
    if (path.size() > kMaxStatusPathLength) return too_long("policy path", path.size(), kMaxStatusPathLength);
    out.policy_paths.push_back(text(path));
  }
  out.sockets_bound = in.getSocketsBound();
  out.sockets_failed = in.getSocketsFailed();
  out.grants_total = in.getGrantsTotal();
  for (auto denial : denials) {
    auto reason = denial.getReason();
    if (reason.size() == 0 || reason.size() > kMaxReasonLength) {
      return protocol_error("status reply: a denial reason of " + std::to_string(reason.size()) +
                            " bytes (1.." + std::to_string(kMaxReasonLength) + " allowed)");
    }
    out.denials.emplace_back(text(reason), denial.getCount());
  }
  out.bad_requests = in.getBadRequests();
  out.clients = in.getClients();
  out.peak_clients = in.getPeakClients();
  out.fds = in.getFds();
  out.reloads_ok = in.getReloadsOk();
  out.reloads_failed = in.getReloadsFailed();
  out.last_reload_time = in.getLastReloadTime();
  out.last_reload_ok = in.getLastReloadOk();
  out.last_reload_message = text(last_reload_message);
  out.audit_failure = text(audit_failure);
  out.audit_failing = in.getAuditFailing();
  out.audit_error = text(audit_error);
  out.audit_failing_since = in.getAuditFailingSince();
  out.audit_lines_lost = in.getAuditLinesLost();
  out.audit_suppressed = in.getAuditSuppressed();
  out.audit_lines_waiting = in.getAuditLinesWaiting();
  out.audit_kept_in_store = in.getAuditKeptInStore();
  out.audit_kept_in_file = text(in.getAuditKeptInFile());
  out.upgrades = in.getUpgrades();
  out.last_upgrade_time = in.getLastUpgradeTime();
  return Reply{std::move(out)};
}

// Keeps to the bounds decode_status checks, whatever the broker's state: paths
// past the limit become one "... and N more" line, reasons past it fold into
// "other" (the total stays right).
void encode_status(const StatusReport& in, wire::Status::Builder out) {
  out.setVersion(as_text(in.version.substr(0, kMaxStatusTextLength)));
  out.setPid(in.pid);
  out.setStartTime(in.start_time);
  out.setUptimeSeconds(in.uptime_seconds);
  out.setPolicyGeneration(in.policy_generation);
  std::vector<std::string> paths;
  for (std::size_t i = 0; i < in.policy_paths.size(); ++i) {
    if (paths.size() + 1 == kMaxStatusPaths && in.policy_paths.size() > kMaxStatusPaths) {
      paths.push_back("... and " + std::to_string(in.policy_paths.size() - i) + " more");
      break;
    }
    paths.push_back(in.policy_paths[i].substr(0, kMaxStatusPathLength));
  }
  auto path_list = out.initPolicyPaths(static_cast<unsigned>(paths.size()));
  for (unsigned i = 0; i < paths.size(); ++i) path_list.set(i, as_text(paths[i]));
  out.setSocketsBound(in.sockets_bound);
  out.setSocketsFailed(in.sockets_failed);
  out.setGrantsTotal(in.grants_total);
  std::vector<std::pair<std::string, std::uint64_t>> denials;  // reason, count
  const bool fold = in.denials.size() > kMaxStatusReasons;
  for (std::size_t i = 0; i < in.denials.size(); ++i) {
    const auto& [reason, count] = in.denials[i];
    if (fold && i == kMaxStatusReasons - 1) denials.emplace_back("other", 0);
    if (fold && i >= kMaxStatusReasons - 1) {
      denials.back().second += count;
      continue;
    }
    denials.emplace_back(reason.empty() ? "unknown" : reason.substr(0, kMaxReasonLength), count);
  }
  auto denial_list = out.initDenials(static_cast<unsigned>(denials.size()));
  for (unsigned i = 0; i < denials.size(); ++i) {
    denial_list[i].setReason(as_text(denials[i].first));
    denial_list[i].setCount(denials[i].second);
  }
  out.setBadRequests(in.bad_requests);
  out.setClients(in.clients);
  out.setPeakClients(in.peak_clients);
  out.setFds(in.fds);
  out.setReloadsOk(in.reloads_ok);
  out.setReloadsFailed(in.reloads_failed);
  out.setLastReloadTime(in.last_reload_time);
  out.setLastReloadOk(in.last_reload_ok);
  out.setLastReloadMessage(as_text(in.last_reload_message.substr(0, kMaxStatusTextLength)));
  out.setAuditFailure(as_text(in.audit_failure.substr(0, kMaxStatusWordLength)));
  out.setAuditFailing(in.audit_failing);
  out.setAuditError(as_text(in.audit_error.substr(0, kMaxStatusAuditErrorLength)));
  out.setAuditFailingSince(in.audit_failing_since);
  out.setAuditLinesLost(in.audit_lines_lost);
  out.setAuditSuppressed(in.audit_suppressed);
  out.setAuditLinesWaiting(in.audit_lines_waiting);
  out.setAuditKeptInStore(in.audit_kept_in_store);
  out.setAuditKeptInFile(in.audit_kept_in_file);
  out.setUpgrades(in.upgrades);
  out.setLastUpgradeTime(in.last_upgrade_time);
}

// An address must be what bind(2) of its family takes: the right number of
// bytes, a port for IP, a Unix name that fits sun_path.
Result<SocketAddress> address_from_wire(wire::AcquireAddress::Reader in) {
  SocketAddress out;
  out.family = in.getFamily();
  out.port = in.getPort();
  out.scope_id = in.getScopeId();
  auto data = in.getAddress();
  out.bytes.assign(data.begin(), data.end());
  switch (out.family) {
    case AF_INET:
      if (out.bytes.size() != 4) return protocol_error("an IPv4 address of " + std::to_string(out.bytes.size()) + " bytes");
      if (out.port == 0) return protocol_error("an IPv4 address without a port");
      if (out.scope_id != 0) return protocol_error("an IPv4 address with a scope");
      return out;
    case AF_INET6:
      if (out.bytes.size() != 16) return protocol_error("an IPv6 address of " + std::to_string(out.bytes.size()) + " bytes");
      if (out.port == 0) return protocol_error("an IPv6 address without a port");
      return out;
    case AF_UNIX:
      if (out.bytes.empty() || out.bytes.size() > kMaxUnixAddressBytes) {
        return protocol_error("a Unix address of " + std::to_string(out.bytes.size()) + " bytes (1.." +
                              std::to_string(kMaxUnixAddressBytes) + ")");
      }
      if (out.port != 0 || out.scope_id != 0) return protocol_error("a Unix address with a port or scope");
      return out;
    default:
      return protocol_error("address family " + std::to_string(out.family) + " (AF_INET, AF_INET6 or AF_UNIX only)");
  }
}

}  // namespace

const char* to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::unknown_socket: return "unknown_socket";
    case ErrorCode::denied: return "denied";
    case ErrorCode::quota: return "quota";
    case ErrorCode::bind: return "bind";
    case ErrorCode::protocol: return "protocol";
    case ErrorCode::invalid: return "invalid";
    case ErrorCode::system: return "system";
  }
  return "?";
}

Result<Request> decode_request(std::span<const std::byte> datagram) {
  return read_message(datagram, [](capnp::MessageReader& message) -> Result<Request> {
    auto request = message.getRoot<wire::Request>();
    if (request.getVersion() != kProtocolVersion) return version_error(request.getVersion());
    switch (request.which()) {
      case wire::Request::ACQUIRE: {
        auto acquire = request.getAcquire();
        if (!acquire.hasName()) return protocol_error("acquire without a socket name");
        auto name = acquire.getName();
        if (name.size() > kMaxNameLength) {
          return protocol_error("socket name longer than " + std::to_string(kMaxNameLength) + " bytes");
        }
        std::string name_text = text(name);
        if (!valid_socket_name(name_text)) {
          return protocol_error("socket name has characters outside [A-Za-z0-9_.-]");
        }
        return Request{AcquireRequest{std::move(name_text), acquire.getFlags(), acquire.getWithNetns()}};
      }
      case wire::Request::LIST_SOCKETS:
        return Request{ListRequest{request.getListSockets().getCursor(), request.getListSockets().getWithHolders()}};
      case wire::Request::RELOAD:
        return Request{ReloadRequest{}};
      case wire::Request::STATUS:
        return Request{StatusRequest{}};
      case wire::Request::ACQUIRE_ADDRESS: {
        auto in = request.getAcquireAddress();
        auto type = socket_type_from_wire(in.getType());
        if (!type) return type.error();
        auto address = address_from_wire(in);
        if (!address) return std::move(address).error();
        return Request{AcquireAddressRequest{*type, std::move(*address), in.getV6only()}};
      }
      case wire::Request::WATCH:
        return Request{WatchRequest{}};
      case wire::Request::UPGRADE:
        return Request{UpgradeRequest{}};
      case wire::Request::REVOKE: {
        auto revoke = request.getRevoke();
        auto name = text(revoke.getName());
        if (!valid_socket_name(name)) return protocol_error("revoke: \"" + printable(name.substr(0, kMaxNameLength)) + "\" is not a socket name");
        return Request{RevokeRequest{std::move(name)}};
      }
    }
    return protocol_error("unknown request kind " + std::to_string(static_cast<unsigned>(request.which())));
  });
}

Result<Reply> decode_reply(std::span<const std::byte> datagram) {
  return read_message(datagram, [](capnp::MessageReader& message) -> Result<Reply> {
    auto reply = message.getRoot<wire::Reply>();
    if (reply.getVersion() != kProtocolVersion) return version_error(reply.getVersion());
    switch (reply.which()) {
      case wire::Reply::GRANT: {
        auto grant = reply.getGrant();
        auto type = socket_type_from_wire(grant.getType());
        if (!type) return type.error();
        return Reply{Grant{text(grant.getName()), *type, grant.getFamily(), text(grant.getAddress())}};
      }
      case wire::Reply::FAILURE: {
        auto failure = reply.getFailure();
        auto code = failure.getCode();
        if (static_cast<unsigned>(code) > static_cast<unsigned>(wire::ErrorCode::SYSTEM)) {
          return protocol_error("unknown error code " + std::to_string(static_cast<unsigned>(code)));
        }
        Failure out{static_cast<ErrorCode>(code), text(failure.getMessage()), std::nullopt};
        if (failure.hasPeer()) {
          auto peer = failure.getPeer();
          out.peer = PeerView{peer.getPid(), peer.getUid(), peer.getGid(), text(peer.getUnit())};
        }
        return Reply{std::move(out)};
      }
      case wire::Reply::LISTING: {
        auto listing = reply.getListing();
        Listing out;
        out.next_cursor = listing.getNextCursor();
        out.admin = listing.getAdmin();
        for (auto entry : listing.getEntries()) {
          auto type = socket_type_from_wire(entry.getType());
          if (!type) return type.error();
          auto inodes = entry.getInodes();
          if (inodes.size() > kMaxInodesPerEntry) {
            return protocol_error("listing entry with " + std::to_string(inodes.size()) + " inodes, more than " +
                                  std::to_string(kMaxInodesPerEntry));
          }
          out.entries.push_back(SocketEntry{text(entry.getName()), *type, text(entry.getAddress()),
                                            text(entry.getState()), text(entry.getDetail()), entry.getHolders(),
                                            entry.getGrantsTotal(), entry.getMaxGrants(), entry.getReusePort()});
          for (std::uint64_t inode : inodes) out.entries.back().inodes.push_back(inode);
          auto rows = entry.getHolderRows();
          if (rows.size() > kMaxHolderRowsPerEntry) {
            return protocol_error("listing entry with " + std::to_string(rows.size()) + " holder rows, more than " +
                                  std::to_string(kMaxHolderRowsPerEntry));
          }
          for (auto row : rows) {
            // Read once: each read of a pointer counts against the traversal limit.
            auto unit = row.getUnit();
            if (unit.size() > kMaxNameLength) return protocol_error("holder unit longer than its bound");
            out.entries.back().holder_rows.push_back({row.getPid(), row.getUid(), text(unit)});
          }
        }
        return Reply{std::move(out)};
      }
      case wire::Reply::NOTICE: {
        auto notice = reply.getNotice();
        if (notice.getSocket().size() > kMaxNameLength || notice.getMessage().size() > kMaxMessageLength) {
          return protocol_error("notice longer than its bounds");
        }
        return Reply{Notice{text(notice.getSocket()), text(notice.getMessage())}};
      }
      case wire::Reply::STATUS:
        return decode_status(reply.getStatus());
      case wire::Reply::OUTCOME: {
        auto outcome = reply.getOutcome();
        Outcome out{outcome.getOk(), text(outcome.getMessage()), {}, {}};
        for (auto detail : outcome.getDetails()) out.details.push_back(text(detail));
        auto failed = outcome.getFailedSockets();
        if (failed.size() > kMaxOutcomeFailed) return protocol_error("outcome with too many failed sockets");
        for (auto name : failed) out.failed_sockets.push_back(text(name));
        return Reply{std::move(out)};
      }
    }
    return protocol_error("unknown reply kind " + std::to_string(static_cast<unsigned>(reply.which())));
  });
}

Result<std::size_t> encode_request(const Request& request, std::span<std::byte> out) {
  std::array<capnp::word, kRequestSegmentWords> segment{};
  capnp::MallocMessageBuilder message(kj::arrayPtr(segment.data(), segment.size()));
  auto root = message.initRoot<wire::Request>();
  root.setVersion(kProtocolVersion);
  if (const auto* acquire = std::get_if<AcquireRequest>(&request)) {
    if (acquire->name.size() > kMaxNameLength) {
      return Error{SOCKBROKER_E_INVALID, 0, "socket name longer than " + std::to_string(kMaxNameLength) + " bytes"};
    }
    if (!valid_socket_name(acquire->name)) {
      return Error{SOCKBROKER_E_INVALID, 0,
                   "\"" + printable(acquire->name) + "\" is not a socket name (1.." + std::to_string(kMaxNameLength) +
                       " of A-Z a-z 0-9 _ . -)"};
    }
    auto body = root.initAcquire();
    body.setName(as_text(acquire->name));
    body.setFlags(acquire->flags);
    body.setWithNetns(acquire->with_netns);
  } else if (const auto* list = std::get_if<ListRequest>(&request)) {
    auto body = root.initListSockets();
    body.setCursor(list->cursor);
    body.setWithHolders(list->with_holders);
  } else if (std::holds_alternative<ReloadRequest>(request)) {
    root.setReload();
  } else if (std::holds_alternative<StatusRequest>(request)) {
    root.setStatus();
  } else if (std::holds_alternative<WatchRequest>(request)) {
    root.setWatch();
  } else if (std::holds_alternative<UpgradeRequest>(request)) {
    root.setUpgrade();
  } else if (const auto* by_address = std::get_if<AcquireAddressRequest>(&request)) {
    const SocketAddress& address = by_address->address;
    if (address.bytes.size() > kMaxUnixAddressBytes) {
      return Error{SOCKBROKER_E_INVALID, 0, "an address of " + std::to_string(address.bytes.size()) + " bytes"};
    }
    auto body = root.initAcquireAddress();
    body.setType(socket_type_to_wire(by_address->type));
    body.setFamily(address.family);
    body.setPort(address.port);
    body.setAddress(capnp::Data::Reader(address.bytes.data(), address.bytes.size()));
    body.setScopeId(address.scope_id);
    body.setV6only(by_address->v6only);
  } else {
    const auto& revoke = std::get<RevokeRequest>(request);
    if (!valid_socket_name(revoke.name)) {
      return Error{SOCKBROKER_E_INVALID, 0, "\"" + printable(revoke.name) + "\" is not a socket name"};
    }
    root.initRevoke().setName(as_text(revoke.name));
  }
  return finish(message, out);
}

Result<std::size_t> encode_reply(const Reply& reply, std::span<std::byte> out) {
  // Cap'n Proto words: a datagram's worth, and room for its segment table;
  // MallocMessageBuilder wants its first segment zeroed.
  alignas(8) std::array<std::uint64_t, kWordsPerDatagram + 8> segment{};
  static_assert(sizeof(capnp::word) == sizeof(std::uint64_t));
  capnp::MallocMessageBuilder message(kj::arrayPtr(reinterpret_cast<capnp::word*>(segment.data()), segment.size()));
  auto root = message.initRoot<wire::Reply>();
  root.setVersion(kProtocolVersion);
  if (const auto* grant = std::get_if<Grant>(&reply)) {
    auto body = root.initGrant();
    body.setName(as_text(grant->name));
    body.setType(socket_type_to_wire(grant->type));
    body.setFamily(grant->family);
    body.setAddress(as_text(grant->address));
  } else if (const auto* failure = std::get_if<Failure>(&reply)) {
    auto body = root.initFailure();
    body.setCode(static_cast<wire::ErrorCode>(failure->code));
    body.setMessage(as_text(failure->message.substr(0, kMaxMessageLength)));
    if (failure->peer) {
      auto peer = body.initPeer();
      peer.setPid(failure->peer->pid);
      peer.setUid(failure->peer->uid);
      peer.setGid(failure->peer->gid);
      peer.setUnit(as_text(failure->peer->unit.substr(0, kMaxNameLength * 2)));
    }
  } else if (const auto* outcome = std::get_if<Outcome>(&reply)) {
    auto body = root.initOutcome();
    body.setOk(outcome->ok);
    body.setMessage(as_text(outcome->message.substr(0, kMaxMessageLength)));
    // Keep the reply inside one datagram: as many details as fit, then a count.
    std::vector<std::string> details;
    std::size_t budget = kMaxDatagram - 256 - outcome->message.substr(0, kMaxMessageLength).size();
    for (std::size_t i = 0; i < outcome->details.size(); ++i) {
      std::string line = outcome->details[i].substr(0, 512);
      std::size_t cost = 8 + (line.size() + 8) / 8 * 8;
      if (cost + 64 > budget) {
        details.push_back("... and " + std::to_string(outcome->details.size() - i) + " more");
        break;
      }
      budget -= cost;
      details.push_back(std::move(line));
    }
    auto list = body.initDetails(static_cast<unsigned>(details.size()));
    for (unsigned i = 0; i < details.size(); ++i) list.set(i, as_text(details[i]));
    // Names only (<= kMaxNameLength), as many as the budget left allows.
    std::vector<std::string> failed;
    for (const auto& name : outcome->failed_sockets) {
      const std::size_t cost = 8 + (std::min(name.size(), kMaxNameLength) + 8) / 8 * 8;
      if (failed.size() == kMaxOutcomeFailed || cost + 64 > budget) break;
      budget -= cost;
      failed.push_back(name.substr(0, kMaxNameLength));
    }
    auto failed_list = body.initFailedSockets(static_cast<unsigned>(failed.size()));
    for (unsigned i = 0; i < failed.size(); ++i) failed_list.set(i, as_text(failed[i]));
  } else if (const auto* status = std::get_if<StatusReport>(&reply)) {
    encode_status(*status, root.initStatus());
  } else if (const auto* notice = std::get_if<Notice>(&reply)) {
    auto body = root.initNotice();
    body.setSocket(as_text(notice->socket.substr(0, kMaxNameLength)));
    body.setMessage(as_text(notice->message.substr(0, kMaxMessageLength)));
  } else {
    const auto& listing = std::get<Listing>(reply);
    auto body = root.initListing();
    body.setNextCursor(listing.next_cursor);
    body.setAdmin(listing.admin);
    auto entries = body.initEntries(static_cast<unsigned>(listing.entries.size()));
    for (unsigned i = 0; i < listing.entries.size(); ++i) {
      const auto& in = listing.entries[i];
      auto entry = entries[i];
      entry.setName(as_text(in.name));
      entry.setType(socket_type_to_wire(in.type));
      entry.setAddress(as_text(in.address));
      entry.setState(as_text(in.state));
      entry.setDetail(as_text(in.detail));
      entry.setHolders(in.holders);
      entry.setGrantsTotal(in.grants_total);
      entry.setMaxGrants(in.max_grants);
      entry.setReusePort(in.reuse_port);
      auto inodes = entry.initInodes(static_cast<unsigned>(std::min(in.inodes.size(), kMaxInodesPerEntry)));
      for (unsigned j = 0; j < inodes.size(); ++j) inodes.set(j, in.inodes[j]);
      if (!in.holder_rows.empty()) {
        auto rows = entry.initHolderRows(static_cast<unsigned>(std::min(in.holder_rows.size(), kMaxHolderRowsPerEntry)));
        for (unsigned j = 0; j < rows.size(); ++j) {
          rows[j].setPid(in.holder_rows[j].pid);
          rows[j].setUid(in.holder_rows[j].uid);
          rows[j].setUnit(as_text(in.holder_rows[j].unit.substr(0, kMaxNameLength)));
        }
      }
    }
  }
  return finish(message, out);
}

std::size_t listing_entry_bound(const SocketEntry& entry) noexcept {
  // A list element of SocketEntry: its data and pointer words, plus each Text
  // rounded up to whole words including the NUL terminator.
  // The inodes are a list of UInt64: one word each, no tag.
  constexpr std::size_t kStructBytes = 8 * (3 + 6);
  auto text_bytes = [](const std::string& s) { return (s.size() + 1 + 7) / 8 * 8; };
  // The holder rows are a list of structs (one data and one pointer word
  // each) behind a tag word, each with its unit's Text.
  std::size_t rows = 0;
  const std::size_t row_count = std::min(entry.holder_rows.size(), kMaxHolderRowsPerEntry);
  if (row_count != 0) rows = 8;
  for (std::size_t i = 0; i < row_count; ++i) {
    rows += 16 + text_bytes(entry.holder_rows[i].unit.substr(0, kMaxNameLength));
  }
  return kStructBytes + text_bytes(entry.name) + text_bytes(entry.address) + text_bytes(entry.state) +
         text_bytes(entry.detail) + 8 * std::min(entry.inodes.size(), kMaxInodesPerEntry) + rows;
}

}  // namespace sockbroker::proto
