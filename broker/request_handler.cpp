#include "printable.hpp"
#include "request_handler.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "codec.hpp"
#include "confinement.hpp"
#include "matcher.hpp"
#include "member_census.hpp"
#include "netns_binder.hpp"
#include "peer_identity.hpp"
#include "reload.hpp"
#include "grant_plan.hpp"
#include "shared_socket_repair.hpp"
#include "socket_factory.hpp"

namespace sockbroker::broker {
namespace {

proto::PeerView view_of(const policy::PeerIdentity& peer) {
  return proto::PeerView{peer.pid, peer.uid, peer.gid, peer.unit.value_or("")};
}

// The entry's own kernel socket first, then the granted ones, each once (every
// grant of a shared socket is the entry's own socket), at most kMaxInodesPerEntry.
// The entry's own socket and the sockets granted from it: reuse_port members
// live only in their holders (and leases), not in the table.
std::vector<std::uint64_t> entry_inodes(const TableEntry& entry, const LeaseTable& leases) {
  std::vector<std::uint64_t> inodes;
  if (entry.socket_inode != 0) inodes.push_back(entry.socket_inode);
  leases.for_each_lease_of(entry.id, [&](const Lease& lease) {
    if (inodes.size() == proto::kMaxInodesPerEntry) return;
    if (lease.kernel_socket && lease.kernel_socket == entry.socket) return;
    const std::uint64_t inode = lease.current_inode();
    if (inode != 0 && std::find(inodes.begin(), inodes.end(), inode) == inodes.end()) inodes.push_back(inode);
  });
  return inodes;
}

}  // namespace

// Numbers only: a name lookup (NSS: LDAP, sss) can stall for seconds, and this
// runs on the loop for every denial, where any user can cause one. The
// command line adds the names on the caller's side (cli/exit_codes.cpp).
std::string describe_peer(const policy::PeerIdentity& peer) {
  return "uid " + std::to_string(peer.uid) + ", gid " + std::to_string(peer.gid) +
         ", unit " + (peer.unit ? sockbroker::quoted(*peer.unit) : std::string("none"));
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
        } else if constexpr (std::is_same_v<T, proto::AcquireAddressRequest>) {
          return acquire_address(body, caller);
        } else if constexpr (std::is_same_v<T, proto::UpgradeRequest>) {
          return upgrade(caller);
        } else if constexpr (std::is_same_v<T, proto::WatchRequest>) {
          // The server's (it is about the session), and answered there.
          return Response{proto::Failure{proto::ErrorCode::system, "watch is not a handler request", std::nullopt},
                          nullptr, nullptr};
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
  GrantQuery query;
  query.name = request.name;
  query.flags = request.flags;
  return grant(query, caller);
}

Response RequestHandler::acquire_address(const proto::AcquireAddressRequest& request, const Caller& caller) {
  GrantQuery query;
  auto address = policy::address_of(request.address);
  if (!address) {
    // Well-formed on the wire but not an address a policy can name (a Unix
    // path written otherwise than plainly): no socket is at it.
    query.name = "";
    return deny(Denial{DenialReason::no_socket_for_address,
                       "no socket of the policy listens on that address: " + address.error().message},
                query, caller.identity, std::nullopt);
  }
  query.address = BindAddress{std::move(*address), request.type, request.v6only};
  return grant(query, caller);
}

Response RequestHandler::grant(GrantQuery& query, const Caller& caller) {
  if (caller.netns_fd >= 0) {
    const policy::SocketSpec* named = query.address ? nullptr : state_.policy.find(query.name);
    // A namespace sent along for any other socket is ignored (the server disposes of it).
    if (named == nullptr || named->netns == policy::NetnsMode::request) {
      query.netns.emplace(inspect_network_namespace(caller.netns_fd, named));
    }
  }
  const CallerFacts facts = learn_caller(caller);
  Planned planned = plan_on_fresh_counts(query, facts);
  const std::optional<std::uint64_t> netns =
      query.netns && query.netns->ok() ? std::optional<std::uint64_t>(query.netns->value().inode) : std::nullopt;
  if (auto* denial = std::get_if<Denial>(&planned)) return deny(std::move(*denial), query, caller.identity, netns);
  const GrantPlan& plan = std::get<GrantPlan>(planned);
  if (auto refused = refuse_unless_audited(plan)) return deny(std::move(*refused), query, caller.identity, netns);
  return carry_out(plan, facts, caller);
}

CallerFacts RequestHandler::learn_caller(const Caller& caller) {
  CallerFacts facts{caller.identity};
  facts.sender_pid = caller.sender_pid;
  facts.trackable = caller.pidfd >= 0;
  facts.alive = !caller.connector_gone;
  if (Holder* known = remembered_holder(caller)) {
    // A kept-open connection asking again: its holder was found alive on an
    // earlier grant and is still in the table (its exit event not yet seen at
    // most, which only a process that inherited the connection could exploit,
    // to get a grant counted against the dead holder until that event is
    // handled a moment later). Saves a poll(2) of the pidfd per grant.
    facts.holder = known;
  } else if (facts.trackable) {
    std::unique_ptr<Holder> stale;
    facts.holder = state_.leases.live_record(caller.identity.pid, stale);
    release_holder(state_, std::move(stale));
    facts.alive = facts.holder != nullptr || process_alive(caller.pidfd);
  }
  return facts;
}

Planned RequestHandler::plan_on_fresh_counts(const GrantQuery& query, const CallerFacts& facts) {
  Planned planned = plan_grant(query, facts, state_.policy, state_.table, state_.leases);
  if (const auto* denial = std::get_if<Denial>(&planned);
      denial != nullptr && (denial->reason == DenialReason::quota || denial->reason == DenialReason::client_quota)) {
    // Members their holders closed count until the kernel is asked; asked
    // only here, where the count decides, so a grant within its limits pays
    // nothing for it.
    if (count_closed_members(denial->reason == DenialReason::quota ? denial->socket : nullptr, facts.holder) != 0) {
      planned = plan_grant(query, facts, state_.policy, state_.table, state_.leases);
    }
  }
  if (const auto* plan = std::get_if<GrantPlan>(&planned); plan != nullptr && plan->source == GrantPlan::Source::shared) {
    // A holder may have broken the one socket every holder shares (shutdown,
    // connect): repaired before anyone else gets it (shared_socket_repair.hpp).
    TableEntry* entry = state_.table.find(plan->spec->name);
    if (entry != nullptr && entry->socket) {
      if (Damage damage = inspect_shared_socket(entry->socket->get(), entry->spec); damage != Damage::none) {
        repair_shared_socket(state_, *entry, damage, "grant", audit_, log_);
        planned = plan_grant(query, facts, state_.policy, state_.table, state_.leases);
      }
    }
  }
  return planned;
}

std::optional<Denial> RequestHandler::refuse_unless_audited(const GrantPlan& plan) {
  if (!audit_.failing() || state_.policy.broker.audit_failure != policy::AuditFailure::deny) return std::nullopt;
  // Space may have come back since the last retry: one more attempt first.
  audit_.flush();
  if (!audit_.failing()) return std::nullopt;
  const Error& error = *audit_.failure();
  return Denial{DenialReason::audit_unavailable,
                "socket " + sockbroker::quoted(plan.spec->name) + ": the broker cannot write its audit trail (" +
                    std::strerror(error.sys_errno) +
                    ") and grants nothing it cannot record (audit_failure = \"deny\"); try again later",
                false, plan.spec};
}

bool RequestHandler::may_record(const policy::PeerIdentity& peer) {
  const auto& broker = state_.policy.broker;
  return audit_.admit(peer.uid, AuditRateLimit::Limits{broker.audit_rate_per_uid, broker.audit_burst_per_uid});
}

std::size_t RequestHandler::count_closed_members(const policy::SocketSpec* socket, const Holder* holder) {
  // The reuse_port entries in question: the socket's, or those the holder has members of.
  std::vector<const TableEntry*> entries;
  auto consider = [&](const TableEntry* entry) {
    if (entry != nullptr && entry->spec.reuse_port && entry->spec.netns != policy::NetnsMode::request &&
        std::find(entries.begin(), entries.end(), entry) == entries.end()) {
      entries.push_back(entry);
    }
  };
  if (socket != nullptr) consider(state_.table.find(socket->name));
  if (holder != nullptr) {
    for (const Lease& lease : holder->leases) {
      if (lease.member()) consider(state_.table.find(lease.socket));
    }
  }
  std::size_t dropped = 0;
  for (const TableEntry* entry : entries) {
    auto alive = sockets_on_port(entry->spec);
    if (!alive) {
      // Counted as held, as before: a limit errs on the side of refusing.
      log_.warn("socket \"{}\": cannot tell which members still exist: {}", entry->spec.name, alive.error().describe());
      continue;
    }
    if (std::size_t n = state_.leases.drop_closed_members(entry->id, *alive); n != 0) {
      log_.info("socket \"{}\": {} member(s) closed by their holders no longer count", entry->spec.name, n);
      dropped += n;
    }
  }
  return dropped;
}

Response RequestHandler::carry_out(const GrantPlan& plan, const CallerFacts& facts, const Caller& caller) {
  const policy::SocketSpec& spec = *plan.spec;
  TableEntry& entry = *state_.table.find(spec.name);
  auto granted = socket_to_grant(plan, entry, caller);
  if (auto* denial = std::get_if<Denial>(&granted)) return deny(std::move(*denial), {}, caller.identity, plan.netns);
  auto& socket = std::get<std::shared_ptr<const UniqueFd>>(granted);
  Holder* new_holder = nullptr;
  if (auto refused = record_lease(plan, facts, caller, entry, socket, new_holder)) {
    return deny(std::move(*refused), {}, caller.identity, std::nullopt);
  }
  ++entry.grants;
  ++state_.metrics.grants;
  audit_grant(plan, entry, caller);
  return Response{proto::Grant{spec.name, spec.type, static_cast<std::uint16_t>(spec.listen.family()), spec.listen.text},
                  std::move(socket), new_holder};
}

std::variant<std::shared_ptr<const UniqueFd>, Denial> RequestHandler::socket_to_grant(const GrantPlan& plan,
                                                                                     TableEntry& entry,
                                                                                     const Caller& caller) {
  const policy::SocketSpec& spec = *plan.spec;
  switch (plan.source) {
    case GrantPlan::Source::shared:
      return entry.socket;
    case GrantPlan::Source::in_request_netns: {
      auto bound = open_in_netns(spec, caller.netns_fd);
      if (!bound) {
        const int err = bound.error().sys_errno;
        std::string why = bound.error().describe();
        if (err == EADDRINUSE) {
          why = std::string("address in use (a process in that namespace holds it") +
                (spec.reuse_port ? "" : "; the next grant there succeeds once the holder closes it") + ")";
        } else if (err == EPERM || err == EACCES) {
          why += capability_hint(spec);
        }
        return Denial{DenialReason::not_serving,
                      "socket " + sockbroker::quoted(spec.name) + ": cannot bind " + spec.listen.text +
                          " in network namespace net:[" + std::to_string(*plan.netns) + "]: " + why,
                      false, &spec};
      }
      for (const auto& note : bound->notes) log_.warn("socket \"{}\": {}", spec.name, note);
      return std::make_shared<const UniqueFd>(std::move(bound->fd));
    }
    case GrantPlan::Source::new_member: {
      // Only the broker (root) makes members, so no other uid can join the group.
      auto member = state_.table.new_member(entry);
      if (!member) {
        return Denial{DenialReason::not_serving,
                      "socket " + sockbroker::quoted(spec.name) + ": cannot bind a new reuse_port member on " +
                          spec.listen.text + ": " + member.error().describe(),
                      false, &spec};
      }
      return std::make_shared<const UniqueFd>(std::move(member->fd));
    }
  }
  return entry.socket;
}

std::optional<Denial> RequestHandler::record_lease(const GrantPlan& plan, const CallerFacts& facts,
                                                   const Caller& caller, const TableEntry& entry,
                                                   const std::shared_ptr<const UniqueFd>& socket,
                                                   Holder*& new_holder) {
  if (plan.lease != GrantPlan::Lease::new_lease && plan.lease != GrantPlan::Lease::new_record) return std::nullopt;
  Holder* holder = const_cast<Holder*>(facts.holder);
  if (plan.lease == GrantPlan::Lease::new_record) {
    auto made = state_.leases.new_record(caller.identity.pid, caller.identity.uid, caller.pidfd);
    if (!made) {
      return Denial{DenialReason::untrackable,
                    "socket " + sockbroker::quoted(plan.spec->name) + ": " + made.error().describe(), false,
                    plan.spec};
    }
    holder = new_holder = *made;
  }
  if (caller.holder_token != nullptr) *caller.holder_token = holder->token;
  if (plan.source == GrantPlan::Source::new_member) {
    // The broker keeps the member's inode, not the member: it leaves the
    // group when its holder closes it (member_census.hpp).
    state_.leases.add_lease(*holder, Lease{plan.spec->name, entry.id, nullptr, socket_inode(socket->get())});
  } else {
    state_.leases.add_lease(*holder, Lease{plan.spec->name, entry.id, socket, 0});
  }
  return std::nullopt;
}

void RequestHandler::audit_grant(const GrantPlan& plan, const TableEntry& entry, const Caller& caller) {
  // The fast path (audit.hpp): the same line as socket_json + fields, unbuilt.
  AuditLine line = audit_.begin("grant");
  line.socket(*plan.spec);
  if (plan.rule >= 0) {
    line.field("rule", plan.rule);
  } else {
    line.field("rule", nullptr);
  }
  if (caller.audit_peer != nullptr) {
    line.peer(caller.identity, *caller.audit_peer);
  } else {
    line.peer(caller.identity);
  }
  if (plan.netns) line.field("netns", *plan.netns);
  if (plan.spec->max_grants != 0) line.field("live_grants", state_.leases.live_grants(entry.id));
  audit_.commit(line);
}

Response RequestHandler::deny(Denial denial, const GrantQuery& query, const policy::PeerIdentity& peer,
                              std::optional<std::uint64_t> netns) {
  if (denial.ends_with_caller) denial.message += describe_peer(peer);
  const DenialKind kind = kind_of(denial.reason);
  state_.metrics.denied(kind.audit_reason);
  // Counted always; written (audit and log) within the caller's uid's rate.
  if (!may_record(peer)) return Response{proto::Failure{kind.code, std::move(denial.message), view_of(peer)}, nullptr};
  const std::string socket = denial.socket != nullptr ? denial.socket->name : query.name;
  nlohmann::ordered_json fields{{"socket", socket}, {"reason", kind.audit_reason}, {"peer", peer_json(peer)},
                                {"message", denial.message}};
  if (denial.socket == nullptr && query.address) fields["socket"] = nullptr;
  if (netns) fields["netns"] = *netns;
  if (denial.socket != nullptr) {
    fields["local_addr"] = local_addr_json(denial.socket->listen);
    fields["type"] = to_string(denial.socket->type);
  } else if (query.address) {
    // A supervised bind nothing in the policy serves: the address the program asked for.
    fields["local_addr"] = local_addr_json(query.address->address);
    fields["type"] = to_string(query.address->type);
  } else if (const auto* spec = state_.policy.find(socket)) {
    fields["local_addr"] = local_addr_json(spec->listen);
    fields["type"] = to_string(spec->type);
  }
  audit_.emit("deny", std::move(fields));
  log_.info("deny {}: {}", describe_peer(peer), denial.message);
  return Response{proto::Failure{kind.code, std::move(denial.message), view_of(peer)}, nullptr};
}

Response RequestHandler::list(const proto::ListRequest& request, const Caller& caller) {
  const auto& peer = caller.identity;
  const bool admin = policy::is_admin(state_.policy.broker, peer);
  proto::Listing listing;
  listing.admin = admin;
  std::size_t budget = proto::kMaxDatagram - proto::kListingOverheadBound;
  const auto& entries = state_.table.entries();
  if (admin && request.cursor == 0) {
    // Sockets as they are now, when a listing starts (its later pages are
    // read as of then; each page walking every entry again made listing a
    // large table quadratic): one a holder broke is repaired (and audited)
    // before it is listed as bound, and members closed since no longer count.
    check_shared_sockets(state_, std::chrono::steady_clock::now(), audit_, log_, true);
    for (const TableEntry& entry : entries) {
      if (entry.spec.reuse_port && state_.leases.live_grants(entry.id) != 0) (void)count_closed_members(&entry.spec, nullptr);
    }
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
      out.detail = entry.detail(std::chrono::steady_clock::now()).substr(0, 256);
      out.holders = state_.leases.live_grants(entry.id);
      out.grants_total = entry.grants;
      out.max_grants = entry.spec.max_grants;
      out.reuse_port = entry.spec.reuse_port;
      out.inodes = entry_inodes(entry, state_.leases);
      if (request.with_holders) {
        // `list --holders`: the processes holding the entry.
        state_.leases.for_each_holder_of(entry.id, [&](const Holder& holder) {
          if (out.holder_rows.size() == proto::kMaxHolderRowsPerEntry) return;
          out.holder_rows.push_back({holder.pid, holder.uid, unit_of_process(holder.pid, holder.pidfd.get()).value_or("")});
        });
      }
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
  state_.metrics.denied("not_admin");
  if (may_record(caller.identity)) {
    audit_.emit("deny", {{"reason", "not_admin"}, {"request", what}, {"peer", peer_json(caller.identity)}, {"message", message}});
    log_.info("deny {}", message);
  }
  return Response{proto::Failure{proto::ErrorCode::denied, std::move(message), view_of(caller.identity)}, nullptr};
}

Response RequestHandler::reload(const Caller& caller) {
  if (auto refused = refuse_unless_admin("reload", caller)) return std::move(*refused);
  log_.info("reload requested by {}", describe_peer(caller.identity));
  auto outcome = reload_policy(state_, audit_, log_);
  state_.metrics.reloaded(outcome.applied, outcome.message);
  return Response{proto::Outcome{outcome.ok, std::move(outcome.message), std::move(outcome.details),
                                 std::move(outcome.failed_sockets)},
                  nullptr};
}

Response RequestHandler::upgrade(const Caller& caller) {
  if (auto refused = refuse_unless_admin("upgrade", caller)) return std::move(*refused);
  // Done by the loop once this answer is out (Server::upgrade).
  state_.upgrade_requested = true;
  return Response{proto::Outcome{true, "upgrading: the broker re-executes its binary, keeping its pid, sockets and "
                                       "leases (sockbroker status shows the new start time once it serves)",
                                 {}, {}},
                  nullptr, nullptr};
}

Response RequestHandler::revoke(const proto::RevokeRequest& request, const Caller& caller) {
  if (auto refused = refuse_unless_admin("revoke", caller)) return std::move(*refused);
  auto shut = state_.table.revoke(request.name, state_.leases, audit_, log_);
  if (!shut) {
    GrantQuery named;
    named.name = request.name;
    return deny(Denial{DenialReason::unknown_socket, "no socket named " + sockbroker::quoted(request.name) + " in the policy"},
                named, caller.identity, std::nullopt);
  }
  const TableEntry* entry = state_.table.find(request.name);
  auto fields = socket_json(entry->spec);
  fields["holders"] = shut->count();
  fields["shut_down"] = shut->shut_down;
  fields["members_held"] = shut->members_held;
  fields["peer"] = peer_json(caller.identity);
  fields["rebound"] = entry->serving();
  if (!entry->serving()) fields["error"] = entry->error;
  audit_.emit("revoke", std::move(fields));
  std::string reached = describe_reached(*shut);
  std::string message = "socket " + sockbroker::quoted(request.name) + " revoked" +
                        (reached.empty() ? ": no live grants" : reached) + "; " +
                        (entry->serving() ? "bound afresh for future grants"
                                          : "could not bind it again: " + entry->error);
  log_.info("{}", message);
  std::vector<std::string> failed;
  if (!entry->serving()) failed.push_back(entry->spec.name);
  return Response{proto::Outcome{entry->serving(), std::move(message), {}, std::move(failed)}, nullptr};
}

Response RequestHandler::status(const Caller& caller) {
  if (auto refused = refuse_unless_admin("status", caller)) return std::move(*refused);
  const Metrics& m = state_.metrics;
  proto::StatusReport out;
  out.version = SOCKBROKER_VERSION;
  out.pid = ::getpid();
  out.start_time = m.start_time;
  out.uptime_seconds = m.uptime_seconds();
  out.policy_generation = state_.generation;
  out.policy_paths = state_.policy.files;
  out.sockets_bound = static_cast<std::uint32_t>(state_.table.bound_count());
  out.sockets_failed = static_cast<std::uint32_t>(state_.table.failed_count());
  out.grants_total = m.grants;
  out.denials.assign(m.denials.begin(), m.denials.end());
  out.bad_requests = m.bad_requests;
  out.clients = m.clients;
  out.peak_clients = m.peak_clients;
  if (auto fds = count_open_fds()) {
    out.fds = *fds;
  } else {
    log_.warn("status: cannot count the broker's descriptors: {}", fds.error().describe());
  }
  out.reloads_ok = m.reloads_ok;
  out.reloads_failed = m.reloads_failed;
  out.last_reload_time = m.last_reload_time;
  out.last_reload_ok = m.last_reload_ok;
  out.last_reload_message = m.last_reload_message;
  out.upgrades = m.upgrades;
  out.last_upgrade_time = m.last_upgrade_time;
  out.audit_failure = policy::to_string(state_.policy.broker.audit_failure);
  out.audit_failing = audit_.failing();
  if (audit_.failing()) out.audit_error = std::strerror(audit_.failure()->sys_errno);
  out.audit_failing_since = audit_.failing_since();
  out.audit_lines_lost = audit_.lines_lost();
  out.audit_suppressed = audit_.suppressed();
  out.audit_lines_waiting = audit_.lines_pending();
  out.audit_kept_in_store = m.audit_kept_in_store;
  out.audit_kept_in_file = m.audit_kept_in_file;
  return Response{std::move(out), nullptr};
}

Response RequestHandler::bad_request(const Error& error, const policy::PeerIdentity& peer) {
  ++state_.metrics.bad_requests;
  if (may_record(peer)) {
    audit_.emit("bad_request", {{"peer", peer_json(peer)}, {"reason", "malformed"}, {"message", error.message}});
    log_.info("bad request from {}: {}", describe_peer(peer), error.message);
  }
  return Response{proto::Failure{proto::ErrorCode::protocol, error.message, view_of(peer)}, nullptr};
}

Response RequestHandler::limit_reached(std::string_view what, const policy::PeerIdentity& peer) {
  std::string message = "the broker refuses more connections: " + std::string(what);
  state_.metrics.denied("limit");
  if (may_record(peer)) {
    audit_.emit("deny", {{"peer", peer_json(peer)}, {"reason", "limit"}, {"message", message}});
    log_.warn("{} for {}", message, describe_peer(peer));
  }
  return Response{proto::Failure{proto::ErrorCode::quota, std::move(message), view_of(peer)}, nullptr};
}

}  // namespace sockbroker::broker
