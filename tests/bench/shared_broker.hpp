// The one sockbrokerd most benchmarks talk to, started on first use with
// bench_policy() and stopped when the benchmark binary exits.
#pragma once

#include "bench_env.hpp"

namespace sbbench {

[[nodiscard]] Broker& shared_broker();

}  // namespace sbbench
