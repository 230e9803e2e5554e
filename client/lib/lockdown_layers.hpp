// The layers sockbroker::lockdown() stacks, one function each, so that a test
// can apply one layer alone (e.g. Landlock with the seccomp layer switched off)
// and see what that layer by itself refuses. Not installed; not public API.
#pragma once

#include <sockbroker/client.hpp>

namespace sockbroker::lockdown_layers {

// PR_SET_NO_NEW_PRIVS on the calling thread. Both other layers need it to be
// allowed without CAP_SYS_ADMIN; the seccomp layer's TSYNC then carries it to
// every other thread.
[[nodiscard]] Status set_no_new_privs();

// The running kernel's Landlock ABI version, or 0 when Landlock is not built
// in or is disabled at boot.
[[nodiscard]] Result<int> landlock_abi_version();

// Handles LANDLOCK_ACCESS_NET_BIND_TCP with no port allowed, filesystem access
// untouched. A no-op (Ok) when the kernel's ABI is older than 4. Sets
// NO_NEW_PRIVS itself. Restricts the calling thread and what it later creates;
// on ABI >= 8 every thread of the process (LANDLOCK_RESTRICT_SELF_TSYNC).
[[nodiscard]] Status apply_landlock_net();

// Loads the lockdown seccomp filter on every thread (TSYNC), with NO_NEW_PRIVS.
[[nodiscard]] Status apply_seccomp(const LockdownOptions& options);

}  // namespace sockbroker::lockdown_layers
