#include "request_handler.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "codec.hpp"
#include "matcher.hpp"
#include "reload.hpp"
#include "socket_factory.hpp"

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

std::string describe(const Error& e) {
  return e.sys_errno != 0 ? e.message + ": " + std::strerror(e.sys_errno) : e.message;
}

}  // namespace

std::string describe_peer(const policy::PeerIdentity& peer) {
  std::string out = "uid " + std::to_string(peer.uid);
  if (auto name = user_name(peer.uid); !name.empty()) out += " (" + name + ")";
  out += ", gid " + std::to_string(peer.gid);
  if (auto name = group_name(peer.gid); !name.empty()) out += " (" + name + ")";
  out += ", unit " + (peer.unit ? in_quotes(*peer.unit) : std::string("none"));
  return out;
}

Response RequestHandler::handle(const proto::Request& request, const Caller& caller) {
  return std::visit(
      [&](const auto& body) -> Response {
        using T = std::decay_t<decltype(body)>;
        if constexpr (std::is_same_v<T, proto::AcquireRequest>) {
          return acquire(body, caller);
        } else if constexpr (std::is_same_v<T, proto::ListRequest>) {
          return list(body, caller);
        } else if constexpr (std::is_same_v<T, proto::ReloadRequest>) {
          return reload(caller);
        } else {
          return revoke(body, caller);
        }
      },
      request);
}

Response RequestHandler::acquire(const proto::AcquireRequest& request, const Caller& caller) {
  const auto& peer = caller.identity;
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
    return deny(proto::ErrorCode::invalid, "invalid",
                "socket " + in_quotes(request.name) + ": unknown flags " + std::to_string(request.flags), request.name,
                peer);
  }
  if (request.with_netns) {
    return deny(proto::ErrorCode::invalid, "invalid",
                "socket " + in_quotes(request.name) + ": binding in a requested network namespace is not supported yet",
                request.name, peer);
  }
  TableEntry* entry = state_.table.find(request.name);
  if (entry == nullptr || !entry->serving()) {
    std::string why = entry != nullptr ? entry->error : "not bound";
    return deny(proto::ErrorCode::bind, "bind_failed",
                "socket " + in_quotes(request.name) + ": the broker could not bind " + decision.socket->listen.text +
                    ": " + why,
                request.name, peer);
  }
  const auto& spec = entry->spec;

  // The lease: who holds this grant, so that it stops counting when they exit.
  Holder* holder = nullptr;
  Holder* new_holder = nullptr;
  if (caller.pidfd >= 0) {
    // Each process the broker tracks costs it a descriptor: as many as it
    // admits connections, and per uid as many as one uid may connect.
    const auto& limits = state_.policy.broker;
    if (!state_.leases.has_record(peer.pid)) {
      std::string full;
      if (state_.leases.holder_count() >= limits.max_clients) {
        full = "the broker already tracks max_clients (" + std::to_string(limits.max_clients) + ") holder processes";
      } else if (state_.leases.holders_of(peer.uid) >= limits.max_clients_per_uid) {
        full = "uid " + std::to_string(peer.uid) + " already has max_clients_per_uid (" +
               std::to_string(limits.max_clients_per_uid) + ") processes holding grants";
      }
      if (!full.empty()) {
        return deny(proto::ErrorCode::quota, "limit", "socket " + in_quotes(request.name) + ": " + full, request.name,
                    peer);
      }
    }
    std::unique_ptr<Holder> stale;
    auto found = state_.leases.holder_for(peer.pid, peer.uid, caller.pidfd, stale);
    release_holder(state_, std::move(stale));
    if (!found) {
      return deny(proto::ErrorCode::system, "system",
                  "socket " + in_quotes(request.name) + ": " + describe(found.error()), request.name, peer);
    }
    holder = found->holder;
    if (found->created) new_holder = holder;
  } else if (spec.reuse_port || spec.max_grants != 0) {
    return deny(proto::ErrorCode::system, "system",
                "socket " + in_quotes(request.name) +
                    ": cannot track who holds the grant (the kernel lacks SO_PEERPIDFD, Linux >= 6.5)",
                request.name, peer);
  }
  // A process asking again for a shared socket it holds gets the same kernel
  // socket: one holder, one lease. Every reuse_port grant is a new member.
  const bool already_held =
      holder != nullptr && !spec.reuse_port &&
      std::any_of(holder->leases.begin(), holder->leases.end(), [&](const Lease& l) { return l.entry_id == entry->id; });
  if (!already_held) {
    if (spec.max_grants != 0 && entry->live >= spec.max_grants) {
      return deny(proto::ErrorCode::quota, "quota",
                  "socket " + in_quotes(request.name) + ": all " + std::to_string(spec.max_grants) +
                      " grants (max_grants) are held by running processes; try again when one exits",
                  request.name, peer, new_holder);
    }
    if (holder != nullptr && holder->leases.size() >= state_.policy.broker.max_grants_per_client) {
      return deny(proto::ErrorCode::quota, "quota",
                  "socket " + in_quotes(request.name) + ": this process already holds " +
                      std::to_string(holder->leases.size()) + " grants (max_grants_per_client)",
                  request.name, peer, new_holder);
    }
  }

  std::shared_ptr<const UniqueFd> granted = entry->socket;
  if (spec.reuse_port) {
    // Only the broker (root) makes members, so no other uid can join the group.
    auto member = open_policy_socket(spec);
    if (!member) {
      return deny(proto::ErrorCode::bind, "bind_failed",
                  "socket " + in_quotes(request.name) + ": cannot bind a new reuse_port member on " +
                      spec.listen.text + ": " + describe(member.error()),
                  request.name, peer);
    }
    granted = std::make_shared<const UniqueFd>(std::move(member->fd));
  }
  if (holder != nullptr && !already_held) {
    holder->leases.push_back(Lease{spec.name, entry->id, granted});
    ++entry->live;
  }
  ++entry->grants;

  auto fields = socket_json(spec);
  fields["rule"] = decision.rule >= 0 ? nlohmann::ordered_json(decision.rule) : nlohmann::ordered_json(nullptr);
  fields["peer"] = peer_json(peer);
  if (spec.max_grants != 0) fields["live_grants"] = entry->live;
  audit_.emit("grant", std::move(fields));
  return Response{proto::Grant{spec.name, spec.type, static_cast<std::uint16_t>(spec.listen.family()), spec.listen.text},
                  std::move(granted), new_holder};
}

Response RequestHandler::list(const proto::ListRequest& request, const Caller& caller) {
  const auto& peer = caller.identity;
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
    proto::SocketEntry out{entry.spec.name, entry.spec.type, entry.spec.listen.text, {}, {}, 0, 0, 0, false};
    if (admin) {
      out.state = entry.state();
      out.detail = entry.error.substr(0, 256);
      out.holders = entry.live;
      out.grants_total = entry.grants;
      out.max_grants = entry.spec.max_grants;
      out.reuse_port = entry.spec.reuse_port;
    }
    std::size_t cost = proto::listing_entry_bound(out);
    if (cost > budget) break;
    budget -= cost;
    listing.entries.push_back(std::move(out));
  }
  listing.next_cursor = index < entries.size() ? static_cast<std::uint32_t>(index) : 0;
  return Response{std::move(listing), nullptr};
}

std::optional<Response> RequestHandler::refuse_unless_admin(std::string_view what, const Caller& caller) {
  if (policy::is_admin(state_.policy.broker, caller.identity)) return std::nullopt;
  std::string message = std::string(what) + ": permission denied: administrators only (root or admin_group); the broker saw " +
                        describe_peer(caller.identity);
  audit_.emit("deny", {{"reason", "not_admin"}, {"request", what}, {"peer", peer_json(caller.identity)}, {"message", message}});
  log_.info("deny {}", message);
  return Response{proto::Failure{proto::ErrorCode::denied, std::move(message), view_of(caller.identity)}, nullptr};
}

Response RequestHandler::reload(const Caller& caller) {
  if (auto refused = refuse_unless_admin("reload", caller)) return std::move(*refused);
  log_.info("reload requested by {}", describe_peer(caller.identity));
  auto outcome = reload_policy(state_, audit_, log_);
  return Response{proto::Outcome{outcome.ok, std::move(outcome.message), std::move(outcome.details)}, nullptr};
}

Response RequestHandler::revoke(const proto::RevokeRequest& request, const Caller& caller) {
  if (auto refused = refuse_unless_admin("revoke", caller)) return std::move(*refused);
  auto shut = state_.table.revoke(request.name, state_.leases, audit_, log_);
  if (!shut) {
    return deny(proto::ErrorCode::unknown_socket, "unknown_socket",
                "no socket named " + in_quotes(request.name) + " in the policy", request.name, caller.identity);
  }
  const TableEntry* entry = state_.table.find(request.name);
  auto fields = socket_json(entry->spec);
  fields["holders"] = *shut;
  fields["peer"] = peer_json(caller.identity);
  fields["rebound"] = entry->serving();
  if (!entry->serving()) fields["error"] = entry->error;
  audit_.emit("revoke", std::move(fields));
  std::string message = "socket " + in_quotes(request.name) + " revoked: " + std::to_string(*shut) +
                        " live grant(s) shut down; " +
                        (entry->serving() ? "bound afresh for future grants"
                                          : "could not bind it again: " + entry->error);
  log_.info("{}", message);
  return Response{proto::Outcome{entry->serving(), std::move(message), {}}, nullptr};
}

Response RequestHandler::deny(proto::ErrorCode code, std::string_view reason, std::string message,
                              const std::string& socket, const policy::PeerIdentity& peer, Holder* new_holder) {
  nlohmann::ordered_json fields{{"socket", socket}, {"reason", reason}, {"peer", peer_json(peer)}, {"message", message}};
  if (const auto* spec = state_.policy.find(socket)) {
    fields["local_addr"] = local_addr_json(spec->listen);
    fields["type"] = proto::to_string(spec->type);
  }
  audit_.emit("deny", std::move(fields));
  log_.info("deny {}: {}", describe_peer(peer), message);
  proto::Failure failure{code, std::move(message), view_of(peer)};
  return Response{std::move(failure), nullptr, new_holder};
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
