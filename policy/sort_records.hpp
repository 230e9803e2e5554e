// Sorting a vector of large records (SocketSpec, ParsedSocket: a few hundred
// bytes of strings, optionals and vectors each) so that each record moves
// once. std::sort and std::stable_sort move records O(n log n) times, which
// showed in `sockbroker check` of a 10,000-socket policy (docs/PERFORMANCE.md).
#pragma once

#include <algorithm>
#include <cstddef>
#include <numeric>
#include <utility>
#include <vector>

namespace sockbroker::policy::detail {

// Stable: records that compare equal keep their order.
template <class Record, class Less>
void stable_sort_records(std::vector<Record>& records, Less less) {
  std::vector<std::size_t> order(records.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return less(records[a], records[b]); });
  // Apply the permutation in place, one cycle at a time: a second vector would
  // cost fresh pages (page faults) for every record.
  for (std::size_t start = 0; start < order.size(); ++start) {
    if (order[start] == start) continue;
    Record held = std::move(records[start]);
    std::size_t at = start;
    while (order[at] != start) {
      const std::size_t from = order[at];
      records[at] = std::move(records[from]);
      order[at] = at;
      at = from;
    }
    records[at] = std::move(held);
    order[at] = at;
  }
}

}  // namespace sockbroker::policy::detail
