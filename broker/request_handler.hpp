// The privileged answers: one decoded request and a verified identity in, one
// reply (and maybe a descriptor) out, one audit event per decision. The only
// place the broker decides anything; dispatch is one switch over request kinds.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include <sockbroker/fd.hpp>

#include "audit.hpp"
#include "broker_state.hpp"
#include "grant_plan.hpp"
#include "identity.hpp"
#include "logger.hpp"
#include "messages.hpp"

namespace sockbroker::broker {

struct Response {
  proto::Reply reply;
  std::shared_ptr<const UniqueFd> fd;  // attached to the reply; kept alive until sent
  Holder* new_holder = nullptr;        // a process to watch from now on
};

// Who asks: what the kernel vouched for, and the process itself (may be invalid).
struct Caller {
  const policy::PeerIdentity& identity;
  int pidfd;
  // The process that sent this request (SCM_CREDENTIALS): requests count only
  // from the process that connected, whose identity the broker read.
  pid_t sender_pid = 0;
  // The one descriptor an acquire may carry (a network namespace for a
  // netns = "request" socket), untrusted, owned and closed by the server; -1: none.
  int netns_fd = -1;
  // The session's memory of its holder (Session::holder_token): read to skip
  // the liveness check on a kept-open connection, written once it is done.
  std::uint64_t* holder_token = nullptr;
  // The session's memo of its audit "peer" text (Session::audit_peer); null: none.
  std::string* audit_peer = nullptr;
  // Without a pidfd: the connecting process is known to have exited (Peer::gone).
  bool connector_gone = false;
};

class RequestHandler {
 public:
  RequestHandler(BrokerState& state, Audit& audit, spdlog::logger& log) : state_(state), audit_(audit), log_(log) {}

  [[nodiscard]] Response handle(const proto::Request& request, const Caller& caller);

  // A datagram that did not decode: audited as bad_request, answered with a
  // protocol failure.
  [[nodiscard]] Response bad_request(const Error& error, const policy::PeerIdentity& peer);

  // A connection refused for a broker limit (max_clients, max_clients_per_uid).
  [[nodiscard]] Response limit_reached(std::string_view what, const policy::PeerIdentity& peer);

 private:
  Response acquire(const proto::AcquireRequest& request, const Caller& caller);
  // A supervised program's bind(2): the policy socket at that address.
  Response acquire_address(const proto::AcquireAddressRequest& request, const Caller& caller);
  // Every grant, by name or by address: gather the facts, plan, carry out.
  Response grant(GrantQuery& query, const Caller& caller);
  // What the plan needs to know of the caller that takes a system call: its
  // live lease record, whether its process lives.
  [[nodiscard]] CallerFacts learn_caller(const Caller& caller);
  // plan_grant(), again after the state it read was brought up to date where
  // the answer depends on it: a quota after counting members their holders
  // closed; a shared socket after repairing what a holder broke.
  [[nodiscard]] Planned plan_on_fresh_counts(const GrantQuery& query, const CallerFacts& facts);
  // Drops the leases of reuse_port members their holders closed, for the
  // socket's group and the holder's groups (member_census.hpp); how many.
  std::size_t count_closed_members(const policy::SocketSpec* socket, const Holder* holder);
  // The privileged part, in three steps: the socket (the shared one, a new
  // member, or one bound in the request's namespace), the lease, the audit line.
  Response carry_out(const GrantPlan& plan, const CallerFacts& facts, const Caller& caller);
  [[nodiscard]] std::variant<std::shared_ptr<const UniqueFd>, Denial> socket_to_grant(const GrantPlan& plan,
                                                                                    TableEntry& entry,
                                                                                    const Caller& caller);
  // Records the lease the plan asks for; new_holder: the record made, if one was.
  [[nodiscard]] std::optional<Denial> record_lease(const GrantPlan& plan, const CallerFacts& facts,
                                                   const Caller& caller, const TableEntry& entry,
                                                   const std::shared_ptr<const UniqueFd>& socket,
                                                   Holder*& new_holder);
  void audit_grant(const GrantPlan& plan, const TableEntry& entry, const Caller& caller);
  // Audits, counts and answers a refused grant. netns: the namespace a
  // netns = "request" acquire named, for the audit event.
  Response deny(Denial denial, const GrantQuery& query, const policy::PeerIdentity& peer,
                std::optional<std::uint64_t> netns);
  Response list(const proto::ListRequest& request, const Caller& caller);
  Response reload(const Caller& caller);
  Response upgrade(const Caller& caller);
  Response revoke(const proto::RevokeRequest& request, const Caller& caller);
  // Administrators: the counters (Metrics) and what the table and policy say now.
  Response status(const Caller& caller);
  // A denial when the audit trail cannot be written and the policy says
  // audit_failure = "deny": no grant goes out that the trail cannot record.
  [[nodiscard]] std::optional<Denial> refuse_unless_audited(const GrantPlan& plan);
  // Whether a refusal of this caller may cost an audit line and a log line
  // now: the per-uid rate limit (audit_rate_limit.hpp). Counted either way.
  [[nodiscard]] bool may_record(const policy::PeerIdentity& peer);
  // The holder this caller's session already found alive, if still tracked.
  [[nodiscard]] Holder* remembered_holder(const Caller& caller) const;
  // Administrators only; nullopt when the caller is one.
  std::optional<Response> refuse_unless_admin(std::string_view what, const Caller& caller);

  BrokerState& state_;
  Audit& audit_;
  spdlog::logger& log_;
};

// "uid 65534 (nobody), gid 65534 (nogroup), unit none": how denials describe the caller.
[[nodiscard]] std::string describe_peer(const policy::PeerIdentity& peer);

}  // namespace sockbroker::broker
