// stable_sort_records (policy/sort_records.hpp): the policy's sockets are
// sorted by moving each record once, applying the sorted permutation in place.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "sort_records.hpp"

namespace {

struct Record {
  int key = 0;
  std::string payload;  // moved, not copied: a moved-from record must not leak into the result
};

TEST(SortRecords, MatchesStableSortOnEveryShapeOfInput) {
  std::mt19937 random(20261206);
  for (int n : {0, 1, 2, 3, 17, 1000}) {
    for (int round = 0; round < 20; ++round) {
      std::vector<Record> records;
      for (int i = 0; i < n; ++i) {
        // Few distinct keys, so stability is exercised; payload names the original position.
        records.push_back(Record{static_cast<int>(random() % 7), "record " + std::to_string(i)});
      }
      if (round == 1) std::sort(records.begin(), records.end(), [](auto& a, auto& b) { return a.key < b.key; });
      if (round == 2) std::reverse(records.begin(), records.end());
      auto expected = records;
      std::stable_sort(expected.begin(), expected.end(), [](auto& a, auto& b) { return a.key < b.key; });

      sockbroker::policy::detail::stable_sort_records(records, [](auto& a, auto& b) { return a.key < b.key; });
      ASSERT_EQ(records.size(), expected.size());
      for (std::size_t i = 0; i < records.size(); ++i) {
        EXPECT_EQ(records[i].key, expected[i].key) << "n=" << n << " round=" << round << " at " << i;
        EXPECT_EQ(records[i].payload, expected[i].payload) << "n=" << n << " round=" << round << " at " << i;
      }
    }
  }
}

}  // namespace
