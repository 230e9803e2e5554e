// The lockdown's seccomp layer as one declarative table (kDenials in
// lockdown_filter.cpp), turned into a libseccomp filter. Two users: the
// build, which compiles it to BPF once (tools/lockdown_bpf_gen.cpp, so that
// `sockbroker run` does not pay libseccomp's compiler on every service start),
// and `sockbroker run --print-filter`, which shows it as text. Not installed;
// not public API.
#pragma once

#include <seccomp.h>

#include <memory>
#include <string>

#include <sockbroker/client.hpp>

namespace sockbroker::lockdown_filter {

struct FilterRelease {
  void operator()(void* ctx) const noexcept { seccomp_release(ctx); }
};
using Filter = std::unique_ptr<void, FilterRelease>;

// The three filters the table makes:
enum class Variant {
  unsupervised,  // sockbroker_lockdown(), `sockbroker run --no-supervise`: bind and listen refused
  supervised,    // a program `sockbroker run` supervises: bind and listen go to the supervisor
  supervisor,    // `sockbroker run` itself: may look into its program, binds nothing but netlink
};

// Everything allowed but the table's rows (EPERM, 0 without effect, or the
// supervisor); a foreign ABI kills. allow_listen: unsupervised only.
[[nodiscard]] Result<Filter> build_filter(Variant variant, bool allow_listen);
[[nodiscard]] Result<Filter> build_filter(const LockdownOptions& options);

// The filter as libseccomp's pseudo-filter-code text (`sockbroker run --print-filter`).
[[nodiscard]] Result<std::string> filter_text(Variant variant, bool allow_listen);

// libseccomp returns -errno; the message names the step that failed.
[[nodiscard]] Error seccomp_error(const std::string& step, int rc);

}  // namespace sockbroker::lockdown_filter
