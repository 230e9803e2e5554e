// The layers sockbroker::lockdown() stacks, one function each, so that a test
// can apply one layer alone (e.g. Landlock with the seccomp layer switched off)
// and see what that layer by itself refuses. Not installed; not public API.
#pragma once

#include <sockbroker/client.hpp>

#include <string>

namespace sockbroker::lockdown_layers {

// PR_SET_NO_NEW_PRIVS on the calling thread. Both other layers need it to be
// allowed without CAP_SYS_ADMIN; the seccomp layer's TSYNC then carries it to
// every other thread.
[[nodiscard]] Status set_no_new_privs();

// The running kernel's Landlock ABI version, or 0 when Landlock cannot be
// used: not built in (ENOSYS), disabled at boot (EOPNOTSUPP), or refused by
// a container's own seccomp profile (EPERM: systemd-nspawn, older Docker).
// `why` says which, when 0.
[[nodiscard]] Result<int> landlock_abi_version(std::string* why = nullptr);

// Whether the Landlock layer is in place, and if not, why (for the one
// warning `sockbroker run` prints).
struct LandlockOutcome {
  bool applied = false;
  std::string unavailable;  // "" when applied
};

// Handles LANDLOCK_ACCESS_NET_BIND_TCP with no port allowed, filesystem access
// untouched. Not applied (and not an error) when Landlock or its network
// rules (ABI 4) are unavailable: the seccomp layer still refuses bind(2).
// Sets NO_NEW_PRIVS itself. Restricts the calling thread and what it later
// creates; on ABI >= 8 every thread of the process (LANDLOCK_RESTRICT_SELF_TSYNC).
[[nodiscard]] Result<LandlockOutcome> apply_landlock_net();

// Loads the lockdown seccomp filter on every thread (TSYNC), with NO_NEW_PRIVS.
[[nodiscard]] Status apply_seccomp(const LockdownOptions& options);

// The supervised program's filter (bind and listen go to the supervisor), on
// every thread, with NO_NEW_PRIVS; returns the listener the supervisor reads
// the program's calls from (SECCOMP_FILTER_FLAG_NEW_LISTENER). Waits for the
// supervisor's answer without being interrupted by signals where the kernel
// can (SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, Linux >= 5.19).
[[nodiscard]] Result<UniqueFd> apply_supervised_seccomp();

// The supervisor's own filter: binds nothing but AF_NETLINK, listens never.
[[nodiscard]] Status apply_supervisor_seccomp();

}  // namespace sockbroker::lockdown_layers
