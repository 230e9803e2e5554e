#include "grant_plan.hpp"

#include <netinet/in.h>

#include <algorithm>
#include <cstring>

#include "matcher.hpp"
#include "printable.hpp"

namespace sockbroker::broker {
namespace {

using Reason = DenialReason;

std::string socket_named(std::string_view name) { return "socket " + sockbroker::quoted(name); }

Denial refuse(Reason reason, std::string message, const policy::SocketSpec* socket = nullptr) {
  return Denial{reason, std::move(message), false, socket};
}

bool is_v6(const policy::Address& address) { return address.kind == policy::Address::Kind::inet6; }

std::string address_text(const BindAddress& bind) {
  return bind.address.text + " (" + to_string(bind.type) + ")";
}

// The socket a supervised bind names: its address and type, and for IPv6
// its IPV6_V6ONLY, must be a policy socket's. Among several with the address
// (reuse_port groups may share it) the first the caller may acquire.
std::variant<const policy::SocketSpec*, Denial> socket_at(const BindAddress& bind, const policy::Policy& policy,
                                                          const policy::PeerIdentity& peer) {
  const policy::SocketSpec* same_address = nullptr;
  const policy::SocketSpec* mismatched_v6only = nullptr;
  for (const auto& spec : policy.sockets) {
    if (spec.netns != policy::NetnsMode::broker || spec.type != bind.type ||
        !policy::same_address(spec.listen, bind.address)) {
      continue;
    }
    if (is_v6(spec.listen) && spec.v6only != bind.v6only) {
      mismatched_v6only = &spec;
      continue;
    }
    if (same_address == nullptr) same_address = &spec;
    if (policy::decide(policy, peer, spec.name).outcome == policy::Decision::Outcome::grant) return &spec;
  }
  if (same_address != nullptr) return same_address;  // the denial names it
  if (mismatched_v6only != nullptr) {
    const bool policy_dual = !mismatched_v6only->v6only;
    return refuse(Reason::v6only_mismatch,
                  socket_named(mismatched_v6only->name) + " listens on " + mismatched_v6only->listen.text +
                      (policy_dual ? " for IPv6 and IPv4 (v6only = false); the program binds it IPv6-only "
                                     "(IPV6_V6ONLY=1): set v6only = true, or bind it dual-stack"
                                   : " for IPv6 only (v6only = true); the program binds it for IPv6 and IPv4 "
                                     "(IPV6_V6ONLY=0), as Go, Node and Python do: set v6only = false"),
                  mismatched_v6only);
  }
  return refuse(Reason::no_socket_for_address,
                "no socket of the policy listens on " + address_text(bind) +
                    "; add one (listen = " + sockbroker::quoted(bind.address.text) + ") and allow the program's user");
}

// Whether the namespace sent is one the socket's netns_owner or netns_path
// allows (policy.hpp, NetnsAllow); if not, why, for the denial.
std::optional<std::string> netns_refusal(const policy::NetnsAllow& allow, const NamespaceFacts& sent, uid_t requester) {
  if (!allow.restricted()) return std::nullopt;
  if (sent.owner && ((allow.owned_by_requester && *sent.owner == requester) ||
                     std::find(allow.owners.begin(), allow.owners.end(), *sent.owner) != allow.owners.end())) {
    return std::nullopt;
  }
  if (sent.mounted_at) return std::nullopt;

  std::vector<std::string> reasons;
  if (allow.owned_by_requester || !allow.owners.empty()) {
    std::string owners;
    const auto add = [&](const std::string& who) { owners += (owners.empty() ? "" : ", ") + who; };
    if (allow.owned_by_requester) add("the requester (uid " + std::to_string(requester) + ")");
    for (uid_t uid : allow.owners) add("uid " + std::to_string(uid));
    reasons.push_back((sent.owner ? "its user namespace is owned by uid " + std::to_string(*sent.owner)
                                  : std::string("the owner of its user namespace is unknown")) +
                      " (netns_owner allows " + owners + ")");
  }
  if (!allow.paths.empty()) {
    std::string paths;
    for (const auto& path : allow.paths) paths += (paths.empty() ? "" : ", ") + sockbroker::quoted(path);
    std::string why = "it is mounted at no netns_path (" + paths + ")";
    for (const auto& problem : sent.unsearched) why += "; " + problem;
    reasons.push_back(std::move(why));
  }
  std::string out;
  for (const auto& reason : reasons) out += (out.empty() ? "" : ", and ") + reason;
  return out;
}

}  // namespace

DenialKind kind_of(DenialReason reason) noexcept {
  using Code = proto::ErrorCode;
  switch (reason) {
    case Reason::unknown_socket: return {"unknown_socket", Code::unknown_socket};
    case Reason::no_socket_for_address: return {"no_socket_for_address", Code::unknown_socket};
    case Reason::v6only_mismatch: return {"v6only_mismatch", Code::unknown_socket};
    case Reason::no_rule_matched: return {"no_rule_matched", Code::denied};
    case Reason::not_the_connector: return {"not_the_connector", Code::denied};
    case Reason::invalid_flags: return {"invalid", Code::invalid};
    case Reason::netns_missing: return {"invalid", Code::invalid};
    case Reason::netns_invalid: return {"invalid", Code::invalid};
    case Reason::netns_brokers_own: return {"netns_brokers_own", Code::denied};
    case Reason::netns_not_allowed: return {"netns_not_allowed", Code::denied};
    case Reason::not_serving: return {"bind_failed", Code::bind};
    case Reason::holder_limit: return {"limit", Code::quota};
    case Reason::untrackable: return {"system", Code::system};
    case Reason::requester_gone: return {"requester_gone", Code::denied};
    case Reason::quota: return {"quota", Code::quota};
    case Reason::client_quota: return {"quota", Code::quota};
    case Reason::audit_unavailable: return {"audit_unavailable", Code::system};
  }
  return {"system", Code::system};
}

Planned plan_grant(const GrantQuery& query, const CallerFacts& caller, const policy::Policy& policy,
                   const SocketTable& table, const LeaseTable& leases) {
  const policy::PeerIdentity& peer = caller.identity;

  // Which socket.
  std::string_view name = query.name;
  if (query.address) {
    auto found = socket_at(*query.address, policy, peer);
    if (auto* denial = std::get_if<Denial>(&found)) return std::move(*denial);
    name = std::get<const policy::SocketSpec*>(found)->name;
  }
  const auto decision = policy::decide(policy, peer, name);
  if (decision.outcome == policy::Decision::Outcome::unknown_socket) {
    return refuse(Reason::unknown_socket, "no socket named " + sockbroker::quoted(name) + " in the policy");
  }
  const policy::SocketSpec& spec = *decision.socket;
  if (decision.outcome == policy::Decision::Outcome::no_rule_matched) {
    Denial denial = refuse(Reason::no_rule_matched, socket_named(name) + ": permission denied: no allow rule matches ",
                           &spec);
    denial.ends_with_caller = true;
    return denial;
  }

  // Who asks: the process the connection's identity belongs to, and no other.
  if (caller.sender_pid != peer.pid) {
    return refuse(Reason::not_the_connector,
                  socket_named(name) + ": the request came from pid " + std::to_string(caller.sender_pid) +
                      ", not from the process that connected (pid " + std::to_string(peer.pid) +
                      "), whose identity the broker checked: connect from the process that asks",
                  &spec);
  }

  // Well-formed for this socket.
  if (query.flags != 0) {
    return refuse(Reason::invalid_flags, socket_named(name) + ": unknown flags " + std::to_string(query.flags), &spec);
  }
  const bool in_request_netns = spec.netns == policy::NetnsMode::request;
  std::optional<std::uint64_t> netns;
  if (in_request_netns) {
    if (!query.netns) {
      return refuse(Reason::netns_missing,
                    socket_named(name) +
                        " is bound in the requester's network namespace (netns = \"request\"), and the request carried "
                        "none: send one (sockbroker get --netns PATH, Client::acquire_in_netns, sockbroker_acquire_netns)",
                    &spec);
    }
    if (!query.netns->ok()) {
      return refuse(Reason::netns_invalid, socket_named(name) + ": " + query.netns->error().describe(), &spec);
    }
    const NamespaceFacts& sent = query.netns->value();
    // Bound in the broker's own namespace, a request socket would be one more
    // socket on the broker's ports, outside the policy's conflict checks: with
    // reuse_port it would join a broker socket's group (root makes both, so
    // the kernel lets it) and take a share of its connections.
    if (sent.brokers_own) {
      return refuse(Reason::netns_brokers_own,
                    socket_named(name) + ": the network namespace sent (net:[" + std::to_string(sent.inode) +
                        "]) is the broker's own; a netns = \"request\" socket is bound only in another one (a "
                        "container's): send that namespace",
                    &spec);
    }
    if (auto why = netns_refusal(spec.netns_allow, sent, peer.uid)) {
      return refuse(Reason::netns_not_allowed,
                    socket_named(name) + ": permission denied: network namespace net:[" + std::to_string(sent.inode) +
                        "] is not one it may be bound in: " + *why,
                    &spec);
    }
    netns = sent.inode;
  }
  const TableEntry* entry = table.find(name);
  if (entry == nullptr || !entry->serving()) {
    const std::string why = entry != nullptr ? entry->error : "not bound";
    return refuse(Reason::not_serving,
                  socket_named(name) + ": the broker could not bind " + spec.listen.text + ": " + why, &spec);
  }

  GrantPlan plan;
  plan.spec = &spec;
  plan.entry_id = entry->id;
  plan.rule = decision.rule;
  plan.netns = netns;
  plan.source = in_request_netns ? GrantPlan::Source::in_request_netns
                : spec.reuse_port ? GrantPlan::Source::new_member
                                  : GrantPlan::Source::shared;

  // The lease: who holds this grant, so that it stops counting when they exit.
  if (in_request_netns) {
    // No lease: the broker keeps no reference to such a socket and cannot see
    // when the container closes it, while the runtime that asked lives on for
    // thousands of containers. Counting its grants until it exits would lock a
    // long-lived runtime out after max_grants_per_client containers.
    plan.lease = GrantPlan::Lease::none;
    return plan;
  }
  if (!caller.alive) {
    // Leased to a process that is gone, the grant would stop counting at
    // once while whoever holds the connection keeps the socket. (Without a
    // pidfd the broker knows it only of a connector gone before the accept.)
    return refuse(Reason::requester_gone,
                  socket_named(name) + ": the process that asked (pid " + std::to_string(peer.pid) + ") has exited",
                  &spec);
  }
  if (!caller.trackable) {
    if (spec.reuse_port || spec.max_grants != 0) {
      return refuse(Reason::untrackable,
                    socket_named(name) +
                        ": cannot track who holds the grant: the broker has no pidfd of the connecting process "
                        "(a kernel without SO_PEERPIDFD, Linux < 6.5, and the process on its pid no longer runs "
                        "as the uid and gid that connected)",
                    &spec);
    }
    plan.lease = GrantPlan::Lease::none;
    return plan;
  }
  const auto& limits = policy.broker;
  if (caller.holder == nullptr) {
    // Each process the broker tracks costs it a descriptor: as many as it
    // admits connections, and per uid as many as one uid may connect.
    if (leases.holder_count() >= limits.max_clients) {
      return refuse(Reason::holder_limit,
                    socket_named(name) + ": the broker already tracks max_clients (" +
                        std::to_string(limits.max_clients) + ") holder processes",
                    &spec);
    }
    if (leases.holders_of(peer.uid) >= limits.max_clients_per_uid) {
      return refuse(Reason::holder_limit,
                    socket_named(name) + ": uid " + std::to_string(peer.uid) + " already has max_clients_per_uid (" +
                        std::to_string(limits.max_clients_per_uid) + ") processes holding grants",
                    &spec);
    }
  }
  // A process asking again for a shared socket it holds gets the same kernel
  // socket: one holder, one lease. Every reuse_port grant is a new member.
  const bool already_held =
      caller.holder != nullptr && !spec.reuse_port &&
      std::any_of(caller.holder->leases.begin(), caller.holder->leases.end(),
                  [&](const Lease& lease) { return lease.entry_id == entry->id; });
  if (already_held) {
    plan.lease = GrantPlan::Lease::already_held;
    return plan;
  }
  if (spec.max_grants != 0 && leases.live_grants(entry->id) >= spec.max_grants) {
    return refuse(Reason::quota,
                  socket_named(name) + ": all " + std::to_string(spec.max_grants) +
                      " grants (max_grants) are held by running processes; try again when one exits",
                  &spec);
  }
  const std::size_t held = caller.holder != nullptr ? caller.holder->leases.size() : 0;
  if (held >= limits.max_grants_per_client) {
    return refuse(Reason::client_quota,
                  socket_named(name) + ": this process already holds " + std::to_string(held) +
                      " grants (max_grants_per_client)",
                  &spec);
  }
  plan.lease = caller.holder != nullptr ? GrantPlan::Lease::new_lease : GrantPlan::Lease::new_record;
  return plan;
}

}  // namespace sockbroker::broker
