// The acquire decision without root or sockets (broker/grant_plan.hpp): every
// reason the broker refuses a grant, quotas, leases, reuse_port groups and
// supervised binds by address, from a policy text and plain facts.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <variant>

#include "grant_plan.hpp"
#include "address.hpp"
#include "loader.hpp"

namespace {

using namespace sockbroker;
using broker::CallerFacts;
using broker::Denial;
using broker::DenialReason;
using broker::GrantPlan;
using broker::GrantQuery;
using broker::LeaseTable;
using broker::SocketTable;
using broker::TableEntry;

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;

policy::Policy parse(const std::string& text) {
  auto loaded = policy::load_policy_text(text, "t.toml", policy::LoadOptions{.check_file_system = false});
  for (const auto& d : loaded.diagnostics) {
    if (d.severity == policy::Diagnostic::Severity::error) ADD_FAILURE() << d.format();
  }
  if (!loaded.policy) std::abort();
  return std::move(*loaded.policy);
}

// A table as the broker's after start-up, without binding anything: every
// socket serving unless named in `failed`.
SocketTable table_for(const policy::Policy& policy, const std::string& failed = "") {
  std::vector<TableEntry> entries;
  std::uint64_t id = 1;
  for (const auto& spec : policy.sockets) {
    TableEntry entry;
    entry.id = id++;
    entry.spec = spec;
    if (spec.name == failed) entry.error = "Address already in use";
    entries.push_back(std::move(entry));
  }
  return SocketTable::of(std::move(entries));
}

policy::PeerIdentity nobody(pid_t pid = 4242) {
  policy::PeerIdentity peer;
  peer.pid = pid;
  peer.uid = kNobody;
  peer.gid = kNogroup;
  return peer;
}

// A pidfd stand-in: the lease table only dups and polls it.
sockbroker::UniqueFd fake_pidfd() { return sockbroker::UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC)); }

struct World {
  policy::Policy policy;
  SocketTable table;
  LeaseTable leases;
  explicit World(const std::string& text, const std::string& failed = "")
      : policy(parse(text)), table(table_for(policy, failed)) {}

  broker::Planned ask(const std::string& name, const policy::PeerIdentity& peer, const broker::Holder* holder = nullptr,
                      bool alive = true) {
    GrantQuery query;
    query.name = name;
    CallerFacts facts{peer};
    facts.sender_pid = peer.pid;
    facts.alive = alive;
    facts.holder = holder;
    return broker::plan_grant(query, facts, policy, table, leases);
  }
  // Records the grant a plan says to make, as the handler would.
  broker::Holder* hold(const broker::Planned& planned, const policy::PeerIdentity& peer, broker::Holder* holder) {
    const auto& plan = std::get<GrantPlan>(planned);
    if (plan.lease == GrantPlan::Lease::new_record) {
      auto fd = fake_pidfd();
      holder = *leases.new_record(peer.pid, peer.uid, fd.get());
    }
    if (plan.lease == GrantPlan::Lease::new_record || plan.lease == GrantPlan::Lease::new_lease) {
      leases.add_lease(*holder, broker::Lease{plan.spec->name, plan.entry_id, nullptr, 0});
    }
    return holder;
  }
};

// What the handler learns of a namespace a request sent (netns_binder.hpp).
broker::NamespaceFacts namespace_facts(std::uint64_t inode, bool brokers_own = false) {
  broker::NamespaceFacts facts;
  facts.inode = inode;
  facts.brokers_own = brokers_own;
  return facts;
}

DenialReason reason_of(const broker::Planned& planned) {
  const auto* denial = std::get_if<Denial>(&planned);
  if (denial == nullptr) {
    ADD_FAILURE() << "granted, expected a denial";
    return DenialReason::unknown_socket;
  }
  return denial->reason;
}

const GrantPlan& plan_of(const broker::Planned& planned) {
  if (const auto* denial = std::get_if<Denial>(&planned)) ADD_FAILURE() << "denied: " << denial->message;
  return std::get<GrantPlan>(planned);
}

const char* const kWeb = R"(
[socket.web]
listen = "0.0.0.0:80"
[[socket.web.allow]]
user = "nobody"
)";

TEST(GrantPlan, EveryReasonHasAnAuditNameAndAnErrorCode) {
  for (int r = 0; r <= static_cast<int>(DenialReason::audit_unavailable); ++r) {
    auto kind = broker::kind_of(static_cast<DenialReason>(r));
    EXPECT_FALSE(kind.audit_reason.empty()) << r;
  }
  EXPECT_EQ(broker::kind_of(DenialReason::no_rule_matched).code, proto::ErrorCode::denied);
  EXPECT_EQ(broker::kind_of(DenialReason::quota).code, proto::ErrorCode::quota);
  EXPECT_EQ(broker::kind_of(DenialReason::not_serving).audit_reason, "bind_failed");
  EXPECT_EQ(broker::kind_of(DenialReason::audit_unavailable).audit_reason, "audit_unavailable");
  EXPECT_EQ(broker::kind_of(DenialReason::audit_unavailable).code, proto::ErrorCode::system);
}

TEST(GrantPlan, AMatchingRuleGrantsASharedSocketWithANewRecord) {
  World world(kWeb);
  const auto planned = world.ask("web", nobody());
  const auto& plan = plan_of(planned);
  EXPECT_EQ(plan.spec->name, "web");
  EXPECT_EQ(plan.rule, 0);
  EXPECT_EQ(plan.source, GrantPlan::Source::shared);
  EXPECT_EQ(plan.lease, GrantPlan::Lease::new_record);
}

TEST(GrantPlan, RootNeedsNoRule) {
  World world("[socket.admin]\nlisten = \"127.0.0.1:443\"\n");
  policy::PeerIdentity root = nobody();
  root.uid = 0;
  root.gid = 0;
  EXPECT_EQ(plan_of(world.ask("admin", root)).rule, -1);
  EXPECT_EQ(reason_of(world.ask("admin", nobody())), DenialReason::no_rule_matched);
}

TEST(GrantPlan, UnknownNamesAndUnmatchedCallersAreRefused) {
  World world(kWeb);
  EXPECT_EQ(reason_of(world.ask("nosuch", nobody())), DenialReason::unknown_socket);
  policy::PeerIdentity daemon = nobody();
  daemon.uid = 1;
  const auto denied = world.ask("web", daemon);
  EXPECT_EQ(reason_of(denied), DenialReason::no_rule_matched);
  EXPECT_TRUE(std::get<Denial>(denied).ends_with_caller) << "the handler names the caller";
}

TEST(GrantPlan, OnlyTheProcessThatConnectedIsServed) {
  World world(kWeb);
  GrantQuery query;
  query.name = "web";
  policy::PeerIdentity peer = nobody(100);
  CallerFacts facts{peer};
  facts.sender_pid = 101;
  EXPECT_EQ(reason_of(broker::plan_grant(query, facts, world.policy, world.table, world.leases)),
            DenialReason::not_the_connector);
}

TEST(GrantPlan, AProcessThatHasExitedIsNotLeasedAnything) {
  World world(kWeb);
  EXPECT_EQ(reason_of(world.ask("web", nobody(), nullptr, /*alive=*/false)), DenialReason::requester_gone);
}

TEST(GrantPlan, FlagsAndFailedSocketsAreRefused) {
  World world(kWeb + std::string("[socket.down]\nlisten = \"0.0.0.0:81\"\n[[socket.down.allow]]\nuser = \"nobody\"\n"),
              "down");
  GrantQuery query;
  query.name = "web";
  query.flags = 1;
  policy::PeerIdentity peer = nobody();
  CallerFacts facts{peer};
  facts.sender_pid = peer.pid;
  EXPECT_EQ(reason_of(broker::plan_grant(query, facts, world.policy, world.table, world.leases)),
            DenialReason::invalid_flags);
  const auto down = world.ask("down", nobody());
  EXPECT_EQ(reason_of(down), DenialReason::not_serving);
  EXPECT_NE(std::get<Denial>(down).message.find("Address already in use"), std::string::npos);
}

TEST(GrantPlan, RequestNamespaceSocketsNeedANamespaceAndTakeNoLease) {
  World world(R"(
[socket.ctr]
listen = "127.0.0.1:8080"
netns = "request"
[[socket.ctr.allow]]
user = "nobody"
)");
  EXPECT_EQ(reason_of(world.ask("ctr", nobody())), DenialReason::netns_missing);
  GrantQuery query;
  query.name = "ctr";
  query.netns.emplace(Error{0, 0, "the descriptor sent with the request is a pipe, not a network namespace"});
  policy::PeerIdentity peer = nobody();
  CallerFacts facts{peer};
  facts.sender_pid = peer.pid;
  EXPECT_EQ(reason_of(broker::plan_grant(query, facts, world.policy, world.table, world.leases)),
            DenialReason::netns_invalid);
  query.netns.emplace(namespace_facts(4026532000));
  const auto planned = broker::plan_grant(query, facts, world.policy, world.table, world.leases);
  const auto& plan = plan_of(planned);
  EXPECT_EQ(plan.source, GrantPlan::Source::in_request_netns);
  EXPECT_EQ(plan.lease, GrantPlan::Lease::none);
  EXPECT_EQ(plan.netns, std::uint64_t{4026532000});
}

// A request socket in the broker's own namespace would join the broker's own
// ports (a reuse_port group of a broker socket, say): refused for everyone,
// root too, before anything is bound.
TEST(GrantPlan, RequestNamespaceSocketIsNeverBoundInTheBrokersOwnNamespace) {
  World world(R"(
[socket.ctr]
listen = "127.0.0.1:8080"
netns = "request"
reuse_port = true
[[socket.ctr.allow]]
user = "nobody"
)");
  GrantQuery query;
  query.name = "ctr";
  query.netns.emplace(namespace_facts(4026531840, true));
  for (uid_t uid : {kNobody, uid_t{0}}) {
    policy::PeerIdentity peer = nobody();
    peer.uid = uid;
    CallerFacts facts{peer};
    facts.sender_pid = peer.pid;
    const auto planned = broker::plan_grant(query, facts, world.policy, world.table, world.leases);
    EXPECT_EQ(reason_of(planned), DenialReason::netns_brokers_own) << "uid " << uid;
    if (const auto* denial = std::get_if<Denial>(&planned)) {
      EXPECT_EQ(denial->message,
                "socket \"ctr\": the network namespace sent (net:[4026531840]) is the broker's own; a netns = "
                "\"request\" socket is bound only in another one (a container's): send that namespace");
    }
  }
  EXPECT_EQ(broker::kind_of(DenialReason::netns_brokers_own).audit_reason, "netns_brokers_own");
  EXPECT_EQ(broker::kind_of(DenialReason::netns_brokers_own).code, proto::ErrorCode::denied);
}

// netns_owner and netns_path: which namespaces qualify, decided from what the
// handler learned of the one sent.
TEST(GrantPlan, RequestNamespaceMustBeOneTheSocketAllows) {
  World world(R"(
[socket.own]
listen = "127.0.0.1:8080"
netns = "request"
netns_owner = "requester"
[[socket.own.allow]]
user = "nobody"
[[socket.own.allow]]
user = 1000

[socket.named]
listen = "127.0.0.1:8081"
netns = "request"
netns_owner = 1000
netns_path = "/run/netns/ctr-*"
[[socket.named.allow]]
user = "nobody"
)");
  const auto ask = [&](const std::string& name, uid_t uid, const broker::NamespaceFacts& sent) {
    GrantQuery query;
    query.name = name;
    query.netns.emplace(sent);
    policy::PeerIdentity peer = nobody();
    peer.uid = uid;
    CallerFacts facts{peer};
    facts.sender_pid = peer.pid;
    return broker::plan_grant(query, facts, world.policy, world.table, world.leases);
  };
  auto owned_by = [](std::optional<uid_t> owner) {
    auto facts = namespace_facts(4026532100);
    facts.owner = owner;
    return facts;
  };

  // "requester": the namespace's user namespace is the caller's.
  EXPECT_EQ(plan_of(ask("own", kNobody, owned_by(kNobody))).netns, std::uint64_t{4026532100});
  EXPECT_EQ(plan_of(ask("own", 0, owned_by(0))).netns, std::uint64_t{4026532100});  // root's own, as for runtimes as root
  const auto rootful = ask("own", kNobody, owned_by(0));
  EXPECT_EQ(reason_of(rootful), DenialReason::netns_not_allowed);
  if (const auto* denial = std::get_if<Denial>(&rootful)) {
    EXPECT_EQ(denial->message,
              "socket \"own\": permission denied: network namespace net:[4026532100] is not one it may be bound in: "
              "its user namespace is owned by uid 0 (netns_owner allows the requester (uid 65534))");
  }
  EXPECT_EQ(reason_of(ask("own", 1000, owned_by(kNobody))), DenialReason::netns_not_allowed);
  EXPECT_EQ(reason_of(ask("own", kNobody, owned_by(std::nullopt))), DenialReason::netns_not_allowed);

  // A listed owner, or a mount at a netns_path: either will do.
  EXPECT_TRUE(std::holds_alternative<GrantPlan>(ask("named", kNobody, owned_by(1000))));
  auto mounted = owned_by(0);
  mounted.mounted_at = "/run/netns/ctr-1";
  EXPECT_TRUE(std::holds_alternative<GrantPlan>(ask("named", kNobody, mounted)));
  auto neither = owned_by(0);
  neither.unsearched.push_back("netns_path \"/x/*\" was not searched: \"/x\" is owned by uid 1000, not root");
  const auto refused = ask("named", kNobody, neither);
  EXPECT_EQ(reason_of(refused), DenialReason::netns_not_allowed);
  if (const auto* denial = std::get_if<Denial>(&refused)) {
    EXPECT_EQ(denial->message,
              "socket \"named\": permission denied: network namespace net:[4026532100] is not one it may be bound "
              "in: its user namespace is owned by uid 0 (netns_owner allows uid 1000), and it is mounted at no "
              "netns_path (\"/run/netns/ctr-*\"); netns_path \"/x/*\" was not searched: \"/x\" is owned by uid "
              "1000, not root");
  }
  EXPECT_EQ(broker::kind_of(DenialReason::netns_not_allowed).audit_reason, "netns_not_allowed");
  EXPECT_EQ(broker::kind_of(DenialReason::netns_not_allowed).code, proto::ErrorCode::denied);
}

TEST(GrantPlan, MaxGrantsCountsLiveHoldersAndFreesWhenOneExits) {
  World world(R"(
[socket.web]
listen = "0.0.0.0:80"
max_grants = 2
[[socket.web.allow]]
user = "nobody"
)");
  auto a = nobody(1001), b = nobody(1002), c = nobody(1003);
  broker::Holder* ha = world.hold(world.ask("web", a), a, nullptr);
  world.hold(world.ask("web", b), b, nullptr);
  EXPECT_EQ(world.leases.live_grants(world.table.find("web")->id), 2u);
  EXPECT_EQ(reason_of(world.ask("web", c)), DenialReason::quota);
  // The same process asking again holds the same socket: no second lease.
  EXPECT_EQ(plan_of(world.ask("web", a, ha)).lease, GrantPlan::Lease::already_held);
  (void)world.leases.remove(*ha);
  EXPECT_EQ(world.leases.live_grants(world.table.find("web")->id), 1u);
  EXPECT_EQ(plan_of(world.ask("web", c)).lease, GrantPlan::Lease::new_record);
}

TEST(GrantPlan, ReusePortGrantsAreNewMembersEachCounted) {
  World world(R"(
[socket.workers]
listen = "0.0.0.0:8080"
reuse_port = true
max_grants = 3
[[socket.workers.allow]]
user = "nobody"
)");
  auto peer = nobody();
  broker::Holder* holder = nullptr;
  for (int i = 0; i < 3; ++i) {
    const auto planned = world.ask("workers", peer, holder);
    EXPECT_EQ(plan_of(planned).source, GrantPlan::Source::new_member);
    holder = world.hold(planned, peer, holder);
  }
  EXPECT_EQ(reason_of(world.ask("workers", peer, holder)), DenialReason::quota);
}

TEST(GrantPlan, OneProcessHoldsAtMostMaxGrantsPerClient) {
  World world("[broker]\nmax_grants_per_client = 2\n" + std::string(R"(
[socket.workers]
listen = "0.0.0.0:8080"
reuse_port = true
[[socket.workers.allow]]
user = "nobody"
)"));
  auto peer = nobody();
  broker::Holder* holder = world.hold(world.ask("workers", peer), peer, nullptr);
  holder = world.hold(world.ask("workers", peer, holder), peer, holder);
  EXPECT_EQ(reason_of(world.ask("workers", peer, holder)), DenialReason::client_quota);
}

TEST(GrantPlan, TheBrokerTracksAtMostMaxClientsHolderProcesses) {
  World world("[broker]\nmax_clients = 4\nmax_clients_per_uid = 2\n" + std::string(kWeb));
  for (pid_t pid : {2001, 2002}) {
    auto peer = nobody(pid);
    world.hold(world.ask("web", peer), peer, nullptr);
  }
  EXPECT_EQ(reason_of(world.ask("web", nobody(2003))), DenialReason::holder_limit) << "max_clients_per_uid";
  policy::PeerIdentity daemon = nobody(3001);
  daemon.uid = 0;  // another uid; root, so that no rule is needed
  for (pid_t pid : {3001, 3002}) {
    daemon.pid = pid;
    world.hold(world.ask("web", daemon), daemon, nullptr);
  }
  daemon.pid = 3003;
  EXPECT_EQ(reason_of(world.ask("web", daemon)), DenialReason::holder_limit) << "max_clients";
}

TEST(GrantPlan, CountedGrantsNeedAPidfd) {
  World world("[socket.workers]\nlisten = \"0.0.0.0:8080\"\nreuse_port = true\n[[socket.workers.allow]]\nuser = "
              "\"nobody\"\n" + std::string(kWeb));
  GrantQuery query;
  query.name = "workers";
  policy::PeerIdentity peer = nobody();
  CallerFacts facts{peer};
  facts.sender_pid = peer.pid;
  facts.trackable = false;
  EXPECT_EQ(reason_of(broker::plan_grant(query, facts, world.policy, world.table, world.leases)),
            DenialReason::untrackable);
  query.name = "web";
  EXPECT_EQ(plan_of(broker::plan_grant(query, facts, world.policy, world.table, world.leases)).lease,
            GrantPlan::Lease::none);
}

// Without SO_PEERPIDFD a connector found gone at accept gets nothing, counted
// or not: the socket would go to whoever holds its connection.
TEST(GrantPlan, AConnectorKnownGoneWithoutAPidfdGetsNothing) {
  World world("[socket.workers]\nlisten = \"0.0.0.0:8080\"\nreuse_port = true\n[[socket.workers.allow]]\nuser = "
              "\"nobody\"\n" + std::string(kWeb));
  policy::PeerIdentity peer = nobody();
  CallerFacts facts{peer};
  facts.sender_pid = peer.pid;
  facts.trackable = false;
  facts.alive = false;
  for (const char* name : {"workers", "web"}) {
    GrantQuery query;
    query.name = name;
    EXPECT_EQ(reason_of(broker::plan_grant(query, facts, world.policy, world.table, world.leases)),
              DenialReason::requester_gone)
        << name;
  }
}

// A supervised bind names a socket by its address, type and (IPv6) v6only.
broker::Planned bind_as(World& world, const std::string& address, SocketType type, bool v6only,
                        const policy::PeerIdentity& peer) {
  GrantQuery query;
  query.address = broker::BindAddress{*policy::parse_address(address), type, v6only};
  CallerFacts facts{peer};
  facts.sender_pid = peer.pid;
  return broker::plan_grant(query, facts, world.policy, world.table, world.leases);
}

TEST(GrantPlan, ASupervisedBindGetsThePolicySocketAtItsAddress) {
  World world(R"(
[socket.web]
listen = "0.0.0.0:80"
[[socket.web.allow]]
user = "nobody"
[socket.dual]
listen = "[::]:443"
v6only = false
[[socket.dual.allow]]
user = "nobody"
[socket.dns]
listen = "127.0.0.1:53"
type = "datagram"
[[socket.dns.allow]]
user = "nobody"
)");
  EXPECT_EQ(plan_of(bind_as(world, "0.0.0.0:80", SocketType::stream, true, nobody())).spec->name, "web");
  EXPECT_EQ(plan_of(bind_as(world, "[::]:443", SocketType::stream, false, nobody())).spec->name, "dual");
  EXPECT_EQ(plan_of(bind_as(world, "127.0.0.1:53", SocketType::datagram, true, nobody())).spec->name, "dns");
  // "[0::0]" is "[::]" to bind(2).
  EXPECT_EQ(plan_of(bind_as(world, "[0::0]:443", SocketType::stream, false, nobody())).spec->name, "dual");

  EXPECT_EQ(reason_of(bind_as(world, "0.0.0.0:8080", SocketType::stream, true, nobody())),
            DenialReason::no_socket_for_address);
  EXPECT_EQ(reason_of(bind_as(world, "127.0.0.1:80", SocketType::stream, true, nobody())),
            DenialReason::no_socket_for_address)
      << "a specific address is not the wildcard the policy binds";
  EXPECT_EQ(reason_of(bind_as(world, "127.0.0.1:53", SocketType::stream, true, nobody())),
            DenialReason::no_socket_for_address)
      << "the type is part of the address";
  const auto v6only = bind_as(world, "[::]:443", SocketType::stream, true, nobody());
  EXPECT_EQ(reason_of(v6only), DenialReason::v6only_mismatch);
  EXPECT_NE(std::get<Denial>(v6only).message.find("set v6only = true"), std::string::npos);
  policy::PeerIdentity daemon = nobody();
  daemon.uid = 1;
  EXPECT_EQ(reason_of(bind_as(world, "0.0.0.0:80", SocketType::stream, true, daemon)),
            DenialReason::no_rule_matched);
}

}  // namespace
