// The acquire decision as a value, as OpenSSH's mon_dispatch table and
// Chromium's BrokerPermissionList make theirs: plan_grant() reads what the
// request asks, what the broker knows of the caller and what the policy,
// socket table and lease table say, and returns either what to do or why
// not, with no system call and no side effect. RequestHandler gathers the
// facts, plans, and carries the plan out (the only privileged part).
//
// Every reason the broker refuses a grant is a DenialReason, and kind_of()
// is the one table saying what the audit log calls it and which error code
// the client gets.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <sockbroker/fd.hpp>

#include "identity.hpp"
#include "lease_table.hpp"
#include "messages.hpp"
#include "policy.hpp"
#include "socket_table.hpp"

namespace sockbroker::broker {

enum class DenialReason : std::uint8_t {
  unknown_socket,         // no socket of that name
  no_socket_for_address,  // a supervised bind: no socket of the policy has that address and type
  v6only_mismatch,        // a supervised bind: the address, but not the program's IPV6_V6ONLY
  no_rule_matched,        // no allow rule matches the caller
  not_the_connector,      // sent by another process than the one that connected
  invalid_flags,
  netns_missing,          // a netns = "request" socket asked for without a namespace
  netns_invalid,          // what was sent is not a network namespace
  netns_brokers_own,      // what was sent is the broker's own network namespace
  netns_not_allowed,      // what was sent is none the socket's netns_owner or netns_path allows
  not_serving,            // the broker could not bind the socket
  holder_limit,           // max_clients / max_clients_per_uid holder processes tracked
  untrackable,            // a counted grant, and no pidfd to count it by (peer_identity.hpp)
  requester_gone,         // the process that asked has exited
  quota,                  // max_grants live grants of the socket
  client_quota,           // max_grants_per_client live grants of the process
  audit_unavailable,      // the audit trail cannot be written and audit_failure = "deny"
};

struct DenialKind {
  std::string_view audit_reason;  // the deny event's "reason", and status's counter
  proto::ErrorCode code;          // what the client is told (its SOCKBROKER_E_*)
};
[[nodiscard]] DenialKind kind_of(DenialReason reason) noexcept;

struct Denial {
  DenialReason reason;
  std::string message;
  // The message ends by naming the caller (describe_peer), which the
  // handler appends: it looks names up, which a pure function must not.
  bool ends_with_caller = false;
  // The policy socket the denial is about, when one was found.
  const policy::SocketSpec* socket = nullptr;
};

// A supervised program's bind(2), as the supervisor read it from the program.
struct BindAddress {
  policy::Address address;
  SocketType type = SocketType::stream;
  bool v6only = true;  // IPV6_V6ONLY of the program's socket (IPv6 only)
};

// What the broker learned of the network namespace an acquire sent, before
// planning (netns_binder.hpp gathers it).
struct NamespaceFacts {
  std::uint64_t inode = 0;   // what lsns shows, and /proc/PID/ns/net as net:[INODE]
  bool brokers_own = false;  // the namespace the broker itself is in
  // Asked only when the socket's netns_owner needs it: the uid owning the
  // namespace's user namespace. Unset: not asked, or the kernel would not say.
  std::optional<uid_t> owner;
  // Asked only when the socket has netns_path: the first place among them the
  // namespace is mounted at, and why any pattern could not be searched.
  std::optional<std::string> mounted_at;
  std::vector<std::string> unsearched;
};

// What one acquire asks for: a socket by name, or the socket at an address.
struct GrantQuery {
  std::string name;                    // when !address
  std::optional<BindAddress> address;  // a supervised bind
  std::uint32_t flags = 0;
  // The descriptor sent with a netns = "request" acquire, as far as the
  // broker could tell: what namespace it is, or why it is not one. Unset:
  // nothing was sent.
  std::optional<Result<NamespaceFacts>> netns;
};

// What the broker knows of the process that asks, gathered before planning.
struct CallerFacts {
  const policy::PeerIdentity& identity;  // of the process that connected
  pid_t sender_pid = 0;          // of the process that sent this request (SCM_CREDENTIALS)
  bool trackable = true;         // its pidfd exists (SO_PEERPIDFD, or found by pid: peer_identity.hpp)
  bool alive = true;             // its process has not exited (as far as the broker knows)
  const Holder* holder = nullptr;  // its live lease record, if it has one
};

struct GrantPlan {
  const policy::SocketSpec* spec = nullptr;
  std::uint64_t entry_id = 0;
  int rule = -1;  // index of the allow rule that matched; -1 for root
  enum class Source : std::uint8_t {
    shared,           // a duplicate of the entry's kernel socket
    new_member,       // a new member of the entry's reuse_port group
    in_request_netns  // bound now, in the namespace the request sent
  } source = Source::shared;
  enum class Lease : std::uint8_t {
    none,          // netns = "request": the broker keeps no reference to count by
    already_held,  // the process holds this very socket already: one lease
    new_lease,     // a lease for the caller's record
    new_record     // a lease, and a record for a process the table does not track yet
  } lease = Lease::new_lease;
  std::optional<std::uint64_t> netns;  // the namespace's inode, for the audit event
};

using Planned = std::variant<GrantPlan, Denial>;

// Pure: reads its arguments only.
[[nodiscard]] Planned plan_grant(const GrantQuery& query, const CallerFacts& caller, const policy::Policy& policy,
                                 const SocketTable& table, const LeaseTable& leases);

}  // namespace sockbroker::broker
