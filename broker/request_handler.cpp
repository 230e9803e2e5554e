#include "printable.hpp"
#include "request_handler.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "codec.hpp"
#include "confinement.hpp"
#include "matcher.hpp"
#include "netns_binder.hpp"
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


std::string describe(const Error& e) {
  return e.sys_errno != 0 ? e.message + ": " + std::strerror(e.sys_errno) : e.message;
}

// The entry's own kernel socket first, then the granted ones, each once (every
// grant of a shared socket is the entry's own socket), at most kMaxInodesPerEntry.
std::vector<std::uint64_t> entry_inodes(const TableEntry& entry,
                                        const std::unordered_map<std::uint64_t, std::vector<const Lease*>>& granted) {
  std::vector<std::uint64_t> inodes;
  if (entry.socket) {
    if (std::uint64_t own = socket_inode(entry.socket->get()); own != 0) inodes.push_back(own);
  }
  if (auto it = granted.find(entry.id); it != granted.end()) {
    for (const Lease* lease : it->second) {
      if (inodes.size() == proto::kMaxInodesPerEntry) break;
      if (lease->kernel_socket && lease->kernel_socket == entry.socket) continue;
      const std::uint64_t inode = lease->current_inode();
      if (inode != 0 && std::find(inodes.begin(), inodes.end(), inode) == inodes.end()) inodes.push_back(inode);
    }
  }
  return inodes;
}

}  // namespace

std::string describe_peer(const policy::PeerIdentity& peer) {
  std::string out = "uid " + std::to_string(peer.uid);
  if (auto name = user_name(peer.uid); !name.empty()) out += " (" + name + ")";
  out += ", gid " + std::to_string(peer.gid);
  if (auto name = group_name(peer.gid); !name.empty()) out += " (" + name + ")";
  out += ", unit " + (peer.unit ? proto::quoted(*peer.unit) : std::string("none"));
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
        } else if constexpr (std::is_same_v<T, proto::StatusRequest>) {
          return status(caller);
        } else {
          return revoke(body, caller);
        }
      },
      request);
}

Holder* RequestHandler::remembered_holder(const Caller& caller) const {
  if (caller.holder_token == nullptr || *caller.holder_token == 0) return nullptr;
  Holder* holder = state_.leases.by_token(*caller.holder_token);
  return holder != nullptr && holder->pid == caller.identity.pid ? holder : nullptr;
}

Response RequestHandler::acquire(const proto::AcquireRequest& request, const Caller& caller) {
  const auto& peer = caller.identity;
  // A netns = "request" socket is bound in the namespace the request carries;
  // for any other socket a namespace sent along is ignored (the server closes it).
  const policy::SocketSpec* named = state_.policy.find(request.name);
  const bool in_request_netns = named != nullptr && named->netns == policy::NetnsMode::request;
  std::optional<Result<std::uint64_t>> sent_netns;
  if (in_request_netns && caller.netns_fd >= 0) sent_netns.emplace(network_namespace_inode(caller.netns_fd));
  // Named in every audit event of the request, denials included.
  const std::optional<std::uint64_t> netns =
      sent_netns && sent_netns->ok() ? std::optional<std::uint64_t>(sent_netns->value()) : std::nullopt;

  const auto decision = policy::decide(state_.policy, peer, request.name);
  switch (decision.outcome) {
    case policy::Decision::Outcome::unknown_socket:
      return deny(proto::ErrorCode::unknown_socket, "unknown_socket",
                  "no socket named " + proto::quoted(request.name) + " in the policy", request.name, peer);
    case policy::Decision::Outcome::no_rule_matched:
      return deny(proto::ErrorCode::denied, "no_rule_matched",
                  "socket " + proto::quoted(request.name) + ": permission denied: no allow rule matches " +
                      describe_peer(peer),
                  request.name, peer, nullptr, netns);
    case policy::Decision::Outcome::grant:
      break;
  }
  if (request.flags != 0) {
    return deny(proto::ErrorCode::invalid, "invalid",
                "socket " + proto::quoted(request.name) + ": unknown flags " + std::to_string(request.flags), request.name,
                peer, nullptr, netns);
  }
  if (in_request_netns && !sent_netns) {
    return deny(proto::ErrorCode::invalid, "invalid",
                "socket " + proto::quoted(request.name) +
                    " is bound in the requester's network namespace (netns = \"request\"), and the request carried "
                    "none: send one (sockbroker get --netns PATH, Client::acquire_in_netns, sockbroker_acquire_netns)",
                request.name, peer);
  }
  if (sent_netns && !sent_netns->ok()) {
    return deny(proto::ErrorCode::invalid, "invalid",
                "socket " + proto::quoted(request.name) + ": " + describe(sent_netns->error()), request.name, peer);
  }
  TableEntry* entry = state_.table.find(request.name);
  if (entry == nullptr || !entry->serving()) {
    std::string why = entry != nullptr ? entry->error : "not bound";
    return deny(proto::ErrorCode::bind, "bind_failed",
                "socket " + proto::quoted(request.name) + ": the broker could not bind " + decision.socket->listen.text +
                    ": " + why,
                request.name, peer);
  }
  const auto& spec = entry->spec;

  // The lease: who holds this grant, so that it stops counting when they exit.
  Holder* holder = nullptr;
  Holder* new_holder = nullptr;
  if (in_request_netns) {
    // No lease: the broker keeps no reference to such a socket and cannot see
    // when the container closes it, while the runtime that asked lives on for
    // thousands of containers. Counting its grants until it exits would lock a
    // long-lived runtime out after max_grants_per_client containers.
  } else if (Holder* known = remembered_holder(caller)) {
    // A kept-open connection asking again: its holder was found alive on an
    // earlier grant and is still in the table (its exit event not yet seen at
    // most, which only a process that inherited the connection could
    // exploit, to get a grant counted against the dead holder until that event
    // is handled a moment later). Saves a poll(2) of the pidfd per grant.
    holder = known;
  } else if (caller.pidfd >= 0) {
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
        return deny(proto::ErrorCode::quota, "limit", "socket " + proto::quoted(request.name) + ": " + full, request.name,
                    peer, nullptr, netns);
      }
    }
    std::unique_ptr<Holder> stale;
    auto found = state_.leases.holder_for(peer.pid, peer.uid, caller.pidfd, stale);
    release_holder(state_, std::move(stale));
    if (!found) {
      return deny(proto::ErrorCode::system, "system",
                  "socket " + proto::quoted(request.name) + ": " + describe(found.error()), request.name, peer, nullptr,
                  netns);
    }
    holder = found->holder;
    if (found->created) new_holder = holder;
    if (caller.holder_token != nullptr) *caller.holder_token = holder->token;
  } else if (spec.reuse_port || spec.max_grants != 0) {
    return deny(proto::ErrorCode::system, "system",
                "socket " + proto::quoted(request.name) +
                    ": cannot track who holds the grant (the kernel lacks SO_PEERPIDFD, Linux >= 6.5)",
                request.name, peer, nullptr, netns);
  }
  // A process asking again for a shared socket it holds gets the same kernel
  // socket: one holder, one lease. Every reuse_port grant is a new member, and
  // every netns = "request" grant a new socket.
  const bool already_held =
      holder != nullptr && !spec.reuse_port && !in_request_netns &&
      std::any_of(holder->leases.begin(), holder->leases.end(), [&](const Lease& l) { return l.entry_id == entry->id; });
  if (!already_held && !in_request_netns) {
    if (spec.max_grants != 0 && entry->live >= spec.max_grants) {
      return deny(proto::ErrorCode::quota, "quota",
                  "socket " + proto::quoted(request.name) + ": all " + std::to_string(spec.max_grants) +
                      " grants (max_grants) are held by running processes; try again when one exits",
                  request.name, peer, new_holder, netns);
    }
    if (holder != nullptr && holder->leases.size() >= state_.policy.broker.max_grants_per_client) {
      return deny(proto::ErrorCode::quota, "quota",
                  "socket " + proto::quoted(request.name) + ": this process already holds " +
                      std::to_string(holder->leases.size()) + " grants (max_grants_per_client)",
                  request.name, peer, new_holder, netns);
    }
  }

  std::shared_ptr<const UniqueFd> granted = entry->socket;
  if (in_request_netns) {
    auto bound = open_in_netns(spec, caller.netns_fd);
    if (!bound) {
      const int err = bound.error().sys_errno;
      std::string why = describe(bound.error());
      if (err == EADDRINUSE) {
        why = std::string("address in use (a process in that namespace holds it") +
              (spec.reuse_port ? "" : "; the next grant there succeeds once the holder closes it") + ")";
      } else if (err == EPERM || err == EACCES) {
        why += capability_hint(spec);
      }
      return deny(proto::ErrorCode::bind, "bind_failed",
                  "socket " + proto::quoted(request.name) + ": cannot bind " + spec.listen.text +
                      " in network namespace net:[" + std::to_string(*netns) + "]: " + why,
                  request.name, peer, new_holder, netns);
    }
    for (const auto& note : bound->notes) log_.warn("socket \"{}\": {}", spec.name, note);
    granted = std::make_shared<const UniqueFd>(std::move(bound->fd));
  } else if (spec.reuse_port) {
    // Only the broker (root) makes members, so no other uid can join the group.
    auto member = state_.table.new_member(*entry);
    if (!member) {
      return deny(proto::ErrorCode::bind, "bind_failed",
                  "socket " + proto::quoted(request.name) + ": cannot bind a new reuse_port member on " +
                      spec.listen.text + ": " + describe(member.error()),
                  request.name, peer, new_holder);
    }
    granted = std::make_shared<const UniqueFd>(std::move(member->fd));
  }
  if (holder != nullptr && !already_held) {
    // The broker keeps no reference to a socket bound in a requested namespace:
    // it would keep the namespace alive after its container is gone. Such a
    // lease counts; revoke cannot shut it down.
    holder->leases.push_back(
        Lease{spec.name, entry->id, in_request_netns ? nullptr : granted, in_request_netns ? socket_inode(granted->get()) : 0});
    ++entry->live;
  }
  ++entry->grants;
  ++state_.metrics.grants;

  // The fast path (audit.hpp): the same line as socket_json + fields, unbuilt.
  AuditLine line = audit_.begin("grant");
  line.socket(spec);
  if (decision.rule >= 0) {
    line.field("rule", decision.rule);
  } else {
    line.field("rule", nullptr);
  }
  if (caller.audit_peer != nullptr) {
    line.peer(peer, *caller.audit_peer);
  } else {
    line.peer(peer);
  }
  if (netns) line.field("netns", *netns);
  if (spec.max_grants != 0) line.field("live_grants", entry->live);
  audit_.commit(line);
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
  // The sockets granted from each entry, by entry id: reuse_port members live
  // only in their holders (and leases), not in the table.
  std::unordered_map<std::uint64_t, std::vector<const Lease*>> granted_leases;
  if (admin) {
    state_.leases.for_each_lease([&](const Lease& lease) { granted_leases[lease.entry_id].push_back(&lease); });
  }
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
      out.inodes = entry_inodes(entry, granted_leases);
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
  state_.metrics.denied("not_admin");
  log_.info("deny {}", message);
  return Response{proto::Failure{proto::ErrorCode::denied, std::move(message), view_of(caller.identity)}, nullptr};
}

Response RequestHandler::reload(const Caller& caller) {
  if (auto refused = refuse_unless_admin("reload", caller)) return std::move(*refused);
  log_.info("reload requested by {}", describe_peer(caller.identity));
  auto outcome = reload_policy(state_, audit_, log_);
  state_.metrics.reloaded(outcome.ok, outcome.message);
  return Response{proto::Outcome{outcome.ok, std::move(outcome.message), std::move(outcome.details)}, nullptr};
}

Response RequestHandler::revoke(const proto::RevokeRequest& request, const Caller& caller) {
  if (auto refused = refuse_unless_admin("revoke", caller)) return std::move(*refused);
  auto shut = state_.table.revoke(request.name, state_.leases, audit_, log_);
  if (!shut) {
    return deny(proto::ErrorCode::unknown_socket, "unknown_socket",
                "no socket named " + proto::quoted(request.name) + " in the policy", request.name, caller.identity);
  }
  const TableEntry* entry = state_.table.find(request.name);
  auto fields = socket_json(entry->spec);
  fields["holders"] = *shut;
  fields["peer"] = peer_json(caller.identity);
  fields["rebound"] = entry->serving();
  if (!entry->serving()) fields["error"] = entry->error;
  audit_.emit("revoke", std::move(fields));
  std::string message = "socket " + proto::quoted(request.name) + " revoked: " + std::to_string(*shut) +
                        " live grant(s) shut down; " +
                        (entry->serving() ? "bound afresh for future grants"
                                          : "could not bind it again: " + entry->error);
  log_.info("{}", message);
  return Response{proto::Outcome{entry->serving(), std::move(message), {}}, nullptr};
}

Response RequestHandler::status(const Caller& caller) {
  if (auto refused = refuse_unless_admin("status", caller)) return std::move(*refused);
  const Metrics& m = state_.metrics;
  proto::StatusReport out;
  out.version = SOCKBROKER_VERSION;
  out.pid = static_cast<std::int32_t>(::getpid());
  out.start_time = m.start_time;
  out.uptime_seconds = m.uptime_seconds();
  out.policy_generation = state_.generation;
  out.policy_paths = state_.policy.files;
  out.sockets_bound = static_cast<std::uint32_t>(state_.table.bound_count());
  out.sockets_failed = static_cast<std::uint32_t>(state_.table.failed_count());
  out.grants_total = m.grants;
  for (const auto& [reason, count] : m.denials) out.denials.push_back(proto::ReasonCount{reason, count});
  out.bad_requests = m.bad_requests;
  out.clients = m.clients;
  out.peak_clients = m.peak_clients;
  if (auto fds = count_open_fds()) {
    out.fds = *fds;
  } else {
    log_.warn("status: cannot count the broker's descriptors: {}", describe(fds.error()));
  }
  out.reloads_ok = m.reloads_ok;
  out.reloads_failed = m.reloads_failed;
  out.last_reload_time = m.last_reload_time;
  out.last_reload_ok = m.last_reload_ok;
  out.last_reload_message = m.last_reload_message;
  return Response{std::move(out), nullptr};
}

Response RequestHandler::deny(proto::ErrorCode code, std::string_view reason, std::string message,
                              const std::string& socket, const policy::PeerIdentity& peer, Holder* new_holder,
                              std::optional<std::uint64_t> netns) {
  nlohmann::ordered_json fields{{"socket", socket}, {"reason", reason}, {"peer", peer_json(peer)}, {"message", message}};
  if (netns) fields["netns"] = *netns;
  if (const auto* spec = state_.policy.find(socket)) {
    fields["local_addr"] = local_addr_json(spec->listen);
    fields["type"] = proto::to_string(spec->type);
  }
  audit_.emit("deny", std::move(fields));
  state_.metrics.denied(reason);
  log_.info("deny {}: {}", describe_peer(peer), message);
  proto::Failure failure{code, std::move(message), view_of(peer)};
  return Response{std::move(failure), nullptr, new_holder};
}

Response RequestHandler::bad_request(const Error& error, const policy::PeerIdentity& peer) {
  audit_.emit("bad_request", {{"peer", peer_json(peer)}, {"reason", "malformed"}, {"message", error.message}});
  ++state_.metrics.bad_requests;
  log_.info("bad request from {}: {}", describe_peer(peer), error.message);
  return Response{proto::Failure{proto::ErrorCode::protocol, error.message, view_of(peer)}, nullptr};
}

Response RequestHandler::limit_reached(std::string_view what, const policy::PeerIdentity& peer) {
  std::string message = "the broker refuses more connections: " + std::string(what);
  audit_.emit("deny", {{"peer", peer_json(peer)}, {"reason", "limit"}, {"message", message}});
  state_.metrics.denied("limit");
  log_.warn("{} for {}", message, describe_peer(peer));
  return Response{proto::Failure{proto::ErrorCode::quota, std::move(message), view_of(peer)}, nullptr};
}

}  // namespace sockbroker::broker
