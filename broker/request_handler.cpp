#include "request_handler.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>

#include "codec.hpp"
#include "matcher.hpp"

namespace sockbroker::broker {
namespace {

proto::PeerView view_of(const policy::PeerIdentity& peer) {
  return proto::PeerView{peer.pid, peer.uid, peer.gid, peer.unit.value_or("")};
}

// Names help a human reading a denial; the numbers are what the policy matched.
std::string user_name(uid_t uid) {
  passwd entry{};
  passwd* found = nullptr;
  char buffer[1024];
  if (::getpwuid_r(uid, &entry, buffer, sizeof buffer, &found) == 0 && found != nullptr) return found->pw_name;
  return {};
}

std::string group_name(gid_t gid) {
  group entry{};
  group* found = nullptr;
  char buffer[4096];
  if (::getgrgid_r(gid, &entry, buffer, sizeof buffer, &found) == 0 && found != nullptr) return found->gr_name;
  return {};
}

std::string in_quotes(std::string_view text) { return "\"" + std::string(text) + "\""; }

}  // namespace

std::string describe_peer(const policy::PeerIdentity& peer) {
  std::string out = "uid " + std::to_string(peer.uid);
  if (auto name = user_name(peer.uid); !name.empty()) out += " (" + name + ")";
  out += ", gid " + std::to_string(peer.gid);
  if (auto name = group_name(peer.gid); !name.empty()) out += " (" + name + ")";
  out += ", unit " + (peer.unit ? in_quotes(*peer.unit) : std::string("none"));
  return out;
}

Response RequestHandler::handle(const proto::Request& request, const policy::PeerIdentity& peer) {
  return std::visit(
      [&](const auto& body) -> Response {
        using T = std::decay_t<decltype(body)>;
        if constexpr (std::is_same_v<T, proto::AcquireRequest>) {
          return acquire(body, peer);
        } else {
          return list(body, peer);
        }
      },
      request);
}

Response RequestHandler::acquire(const proto::AcquireRequest& request, const policy::PeerIdentity& peer) {
  const auto decision = policy::decide(state_.policy, peer, request.name);
  switch (decision.outcome) {
    case policy::Decision::Outcome::unknown_socket:
      return deny(proto::ErrorCode::unknown_socket, "unknown_socket",
                  "no socket named " + in_quotes(request.name) + " in the policy", request.name, peer);
    case policy::Decision::Outcome::no_rule_matched:
      return deny(proto::ErrorCode::denied, "no_rule_matched",
                  "socket " + in_quotes(request.name) + ": permission denied: no allow rule matches " +
                      describe_peer(peer),
                  request.name, peer);
    case policy::Decision::Outcome::grant:
      break;
  }
  if (request.flags != 0) {
    return deny(proto::ErrorCode::invalid, "invalid", "socket " + in_quotes(request.name) + ": unknown flags " +
                std::to_string(request.flags), request.name, peer);
  }
  TableEntry* entry = state_.table.find(request.name);
  if (entry == nullptr || !entry->bound()) {
    std::string why = entry != nullptr ? entry->error : "not bound";
    return deny(proto::ErrorCode::bind, "bind_failed",
                "socket " + in_quotes(request.name) + ": the broker could not bind " + decision.socket->listen.text +
                    ": " + why,
                request.name, peer);
  }
  ++entry->grants;
  nlohmann::ordered_json fields = socket_json(entry->spec);
  fields["rule"] = decision.rule >= 0 ? nlohmann::ordered_json(decision.rule) : nlohmann::ordered_json(nullptr);
  fields["peer"] = peer_json(peer);
  audit_.emit("grant", std::move(fields));
  const auto& spec = entry->spec;
  return Response{proto::Grant{spec.name, spec.type, static_cast<std::uint16_t>(spec.listen.family()), spec.listen.text},
                  entry->socket};
}

Response RequestHandler::list(const proto::ListRequest& request, const policy::PeerIdentity& peer) {
  const bool admin = policy::is_admin(state_.policy.broker, peer);
  proto::Listing listing;
  listing.admin = admin;
  std::size_t budget = proto::kMaxDatagram - proto::kListingOverheadBound;
  const auto& entries = state_.table.entries();
  std::size_t index = request.cursor;
  for (; index < entries.size(); ++index) {
    const TableEntry& entry = entries[index];
    if (!admin && policy::decide(state_.policy, peer, entry.spec.name).outcome != policy::Decision::Outcome::grant) {
      continue;
    }
    proto::SocketEntry out{entry.spec.name, entry.spec.type, entry.spec.listen.text, {}, {}, 0};
    if (admin) {
      out.state = entry.bound() ? "bound" : "failed";
      out.detail = entry.error.substr(0, 256);
      out.holders = static_cast<std::uint32_t>(entry.grants);
    }
    std::size_t cost = proto::listing_entry_bound(out);
    if (cost > budget) break;
    budget -= cost;
    listing.entries.push_back(std::move(out));
  }
  listing.next_cursor = index < entries.size() ? static_cast<std::uint32_t>(index) : 0;
  return Response{std::move(listing), nullptr};
}

Response RequestHandler::deny(proto::ErrorCode code, std::string_view reason, std::string message,
                              const std::string& socket, const policy::PeerIdentity& peer, nlohmann::ordered_json extra) {
  nlohmann::ordered_json fields{{"socket", socket}, {"reason", reason}, {"peer", peer_json(peer)}, {"message", message}};
  if (const auto* spec = state_.policy.find(socket)) {
    fields["local_addr"] = local_addr_json(spec->listen);
    fields["type"] = proto::to_string(spec->type);
  }
  fields.update(extra);
  audit_.emit("deny", std::move(fields));
  log_.info("deny {}: {}", describe_peer(peer), message);
  proto::Failure failure{code, std::move(message), view_of(peer)};
  return Response{std::move(failure), nullptr};
}

Response RequestHandler::bad_request(const Error& error, const policy::PeerIdentity& peer) {
  audit_.emit("bad_request", {{"peer", peer_json(peer)}, {"reason", "malformed"}, {"message", error.message}});
  log_.info("bad request from {}: {}", describe_peer(peer), error.message);
  return Response{proto::Failure{proto::ErrorCode::protocol, error.message, view_of(peer)}, nullptr};
}

Response RequestHandler::limit_reached(std::string_view what, const policy::PeerIdentity& peer) {
  std::string message = "the broker refuses more connections: " + std::string(what);
  audit_.emit("deny", {{"peer", peer_json(peer)}, {"reason", "limit"}, {"message", message}});
  log_.warn("{} for {}", message, describe_peer(peer));
  return Response{proto::Failure{proto::ErrorCode::quota, std::move(message), view_of(peer)}, nullptr};
}

}  // namespace sockbroker::broker
