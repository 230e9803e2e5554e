// The lease table's index by entry (broker/lease_table.hpp): live grants,
// holders and leases of one entry stay what a walk of every holder would
// find, through grants, exits, revokes and closed reuse_port members.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <unordered_set>
#include <vector>

#include "lease_table.hpp"

namespace {

using sockbroker::UniqueFd;
using sockbroker::broker::Holder;
using sockbroker::broker::Lease;
using sockbroker::broker::LeaseTable;

constexpr std::uint64_t kWeb = 1;
constexpr std::uint64_t kWorkers = 2;  // a reuse_port group: leases are members

Lease shared_lease(std::uint64_t entry_id) {
  static const auto socket = std::make_shared<const UniqueFd>();
  return Lease{"shared", entry_id, socket, 0};
}

Lease member_lease(std::uint64_t entry_id, std::uint64_t inode) { return Lease{"member", entry_id, nullptr, inode}; }

// What the index must agree with: a walk of every holder's leases.
std::vector<pid_t> walked_holders_of(const LeaseTable& table, std::uint64_t entry_id) {
  std::vector<pid_t> pids;
  table.for_each_holder([&](const Holder& holder) {
    if (std::any_of(holder.leases.begin(), holder.leases.end(), [&](const Lease& l) { return l.entry_id == entry_id; })) {
      pids.push_back(holder.pid);
    }
  });
  std::sort(pids.begin(), pids.end());
  return pids;
}

std::vector<pid_t> indexed_holders_of(const LeaseTable& table, std::uint64_t entry_id) {
  std::vector<pid_t> pids;
  table.for_each_holder_of(entry_id, [&](const Holder& holder) { pids.push_back(holder.pid); });
  std::sort(pids.begin(), pids.end());
  return pids;
}

std::uint32_t indexed_leases_of(const LeaseTable& table, std::uint64_t entry_id) {
  std::uint32_t n = 0;
  table.for_each_lease_of(entry_id, [&](const Lease& lease) {
    EXPECT_EQ(lease.entry_id, entry_id);
    ++n;
  });
  return n;
}

void expect_consistent(const LeaseTable& table) {
  for (std::uint64_t entry_id : {kWeb, kWorkers}) {
    SCOPED_TRACE("entry " + std::to_string(entry_id));
    EXPECT_EQ(indexed_holders_of(table, entry_id), walked_holders_of(table, entry_id));
    EXPECT_EQ(indexed_leases_of(table, entry_id), table.live_grants(entry_id));
  }
}

TEST(LeaseTable, TheIndexFollowsGrantsAndExits) {
  LeaseTable table;
  Holder* a = table.adopt_record(100, 65534, UniqueFd());
  Holder* b = table.adopt_record(200, 65534, UniqueFd());
  table.add_lease(*a, shared_lease(kWeb));
  table.add_lease(*a, member_lease(kWorkers, 11));
  table.add_lease(*a, member_lease(kWorkers, 12));
  table.add_lease(*b, member_lease(kWorkers, 21));
  EXPECT_EQ(table.live_grants(kWeb), 1u);
  EXPECT_EQ(table.live_grants(kWorkers), 3u);
  EXPECT_EQ(indexed_holders_of(table, kWorkers), (std::vector<pid_t>{100, 200}));  // a once, though it holds two
  expect_consistent(table);

  auto gone = table.remove(*a);
  ASSERT_NE(gone, nullptr);
  EXPECT_EQ(table.live_grants(kWeb), 0u);
  EXPECT_EQ(table.live_grants(kWorkers), 1u);
  EXPECT_EQ(indexed_holders_of(table, kWorkers), std::vector<pid_t>{200});
  expect_consistent(table);
}

TEST(LeaseTable, ARevokeDropsTheEntrysLeasesOnly) {
  LeaseTable table;
  Holder* a = table.adopt_record(100, 65534, UniqueFd());
  Holder* b = table.adopt_record(200, 65534, UniqueFd());
  table.add_lease(*a, shared_lease(kWeb));
  table.add_lease(*b, shared_lease(kWeb));
  table.add_lease(*b, member_lease(kWorkers, 21));

  auto dropped = table.drop_entry(kWeb);
  ASSERT_EQ(dropped.size(), 2u);
  EXPECT_EQ(table.live_grants(kWeb), 0u);
  EXPECT_TRUE(indexed_holders_of(table, kWeb).empty());
  EXPECT_EQ(table.live_grants(kWorkers), 1u);
  EXPECT_EQ(b->leases.size(), 1u);
  expect_consistent(table);
  // A holder that got the socket again after the revoke is indexed anew.
  table.add_lease(*a, shared_lease(kWeb));
  EXPECT_EQ(indexed_holders_of(table, kWeb), std::vector<pid_t>{100});
  expect_consistent(table);
}

TEST(LeaseTable, AHolderLeavesAnEntryWithItsLastClosedMember) {
  LeaseTable table;
  Holder* a = table.adopt_record(100, 65534, UniqueFd());
  Holder* b = table.adopt_record(200, 65534, UniqueFd());
  table.add_lease(*a, member_lease(kWorkers, 11));
  table.add_lease(*a, member_lease(kWorkers, 12));
  table.add_lease(*b, member_lease(kWorkers, 21));

  // a closed one of its two members: it still holds the group.
  EXPECT_EQ(table.drop_closed_members(kWorkers, {12, 21}), 1u);
  EXPECT_EQ(table.live_grants(kWorkers), 2u);
  EXPECT_EQ(indexed_holders_of(table, kWorkers), (std::vector<pid_t>{100, 200}));
  expect_consistent(table);
  // b closed its only one: it holds nothing of the group.
  EXPECT_EQ(table.drop_closed_members(kWorkers, {12}), 1u);
  EXPECT_EQ(indexed_holders_of(table, kWorkers), std::vector<pid_t>{100});
  expect_consistent(table);
  // Every member closed: the entry leaves the index.
  EXPECT_EQ(table.drop_closed_members(kWorkers, {}), 1u);
  EXPECT_EQ(table.live_grants(kWorkers), 0u);
  EXPECT_TRUE(indexed_holders_of(table, kWorkers).empty());
  expect_consistent(table);
}

}  // namespace
