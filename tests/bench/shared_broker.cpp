#include "shared_broker.hpp"

namespace sbbench {

Broker& shared_broker() {
  // Started lazily so that `--benchmark_filter` runs without a broker need none;
  // the directory outlives the broker (destroyed in reverse order).
  static TempDir dir;
  static Broker broker(dir, bench_policy());
  return broker;
}

}  // namespace sbbench
