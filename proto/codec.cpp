#include "codec.hpp"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <sockbroker/client.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "printable.hpp"
#include "sockbroker.capnp.h"

namespace sockbroker::proto {
namespace {

constexpr std::size_t kWordsPerDatagram = kMaxDatagram / sizeof(capnp::word);

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
  kj::ArrayOutputStream stream(kj::arrayPtr(reinterpret_cast<kj::byte*>(out.data()), out.size()));
  capnp::writeMessage(stream, message);
  return bytes;
}

// Scratch for the builder's first segment: one datagram's worth, so encoding
// allocates nothing for any message that can be sent at all.
struct Scratch {
  std::array<capnp::word, kWordsPerDatagram + 8> words{};
};

}  // namespace

const char* to_string(SocketType type) noexcept {
  switch (type) {
    case SocketType::stream: return "stream";
    case SocketType::datagram: return "datagram";
    case SocketType::seqpacket: return "seqpacket";
  }
  return "?";
}

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

bool valid_socket_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
  });
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
        return Request{ListRequest{request.getListSockets().getCursor()}};
      case wire::Request::RELOAD:
        return Request{ReloadRequest{}};
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
          out.entries.push_back(SocketEntry{text(entry.getName()), *type, text(entry.getAddress()),
                                            text(entry.getState()), text(entry.getDetail()), entry.getHolders(),
                                            entry.getGrantsTotal(), entry.getMaxGrants(), entry.getReusePort()});
        }
        return Reply{std::move(out)};
      }
      case wire::Reply::OUTCOME: {
        auto outcome = reply.getOutcome();
        Outcome out{outcome.getOk(), text(outcome.getMessage()), {}};
        for (auto detail : outcome.getDetails()) out.details.push_back(text(detail));
        return Reply{std::move(out)};
      }
    }
    return protocol_error("unknown reply kind " + std::to_string(static_cast<unsigned>(reply.which())));
  });
}

Result<std::size_t> encode_request(const Request& request, std::span<std::byte> out) {
  Scratch scratch;
  capnp::MallocMessageBuilder message(kj::arrayPtr(scratch.words.data(), scratch.words.size()));
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
    root.initListSockets().setCursor(list->cursor);
  } else if (std::holds_alternative<ReloadRequest>(request)) {
    root.setReload();
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
  Scratch scratch;
  capnp::MallocMessageBuilder message(kj::arrayPtr(scratch.words.data(), scratch.words.size()));
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
    }
  }
  return finish(message, out);
}

std::size_t listing_entry_bound(const SocketEntry& entry) noexcept {
  // A list element of SocketEntry: its data and pointer words, plus each Text
  // rounded up to whole words including the NUL terminator.
  constexpr std::size_t kStructBytes = 8 * (3 + 4);
  auto text_bytes = [](const std::string& s) { return (s.size() + 1 + 7) / 8 * 8; };
  return kStructBytes + text_bytes(entry.name) + text_bytes(entry.address) + text_bytes(entry.state) +
         text_bytes(entry.detail);
}

}  // namespace sockbroker::proto
