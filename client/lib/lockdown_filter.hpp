// The lockdown's seccomp layer as one declarative table (kDenials in
// lockdown_filter.cpp), turned into a libseccomp filter. Two users: the
// build, which compiles it to BPF once (tools/lockdown_bpf_gen.cpp, so that
// `sockbroker run` does not pay libseccomp's ~0.5 ms on every service start),
// and `sockbroker run --print-filter`, which shows it as text. Not installed;
// not public API.
#pragma once

#include <seccomp.h>

#include <memory>

#include <sockbroker/client.hpp>

namespace sockbroker::lockdown_filter {

struct FilterRelease {
  void operator()(void* ctx) const noexcept { seccomp_release(ctx); }
};
using Filter = std::unique_ptr<void, FilterRelease>;

// Everything allowed but the table's rows (EPERM); a foreign ABI kills.
[[nodiscard]] Result<Filter> build_filter(const LockdownOptions& options);

// libseccomp returns -errno; the message names the step that failed.
[[nodiscard]] Error seccomp_error(const std::string& step, int rc);

}  // namespace sockbroker::lockdown_filter
