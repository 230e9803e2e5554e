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

// What the Landlock layer did, and what it could not (for the one note
// `sockbroker run` prints).
struct LandlockOutcome {
  // A Landlock domain is in place: the process can no longer ptrace-access
  // (open /proc/PID/mem, process_vm_writev, ...) any process outside it.
  bool applied = false;
  // It also refuses TCP binds (network rules, ABI >= 4).
  bool refuses_tcp_bind = false;
  // "" when both; else one sentence saying what is missing and why.
  std::string note;
};

// The Landlock layer for the running kernel: apply_landlock_for_abi() of its
// ABI, or nothing (and not an error) when Landlock cannot be used.
[[nodiscard]] Result<LandlockOutcome> apply_landlock();

// The layer lockdown() applies on a kernel of Landlock ABI `abi` (at most the
// running kernel's), so that a test can see what older kernels get:
//   >= 4: LANDLOCK_ACCESS_NET_BIND_TCP handled, no port allowed, files untouched;
//   2, 3: LANDLOCK_ACCESS_FS_REFER handled and granted beneath "/", which
//         restricts nothing a service does and brings the domain's ptrace
//         scoping (lockdown.cpp, ruleset_for, says what it still changes);
//   1:    nothing: any domain there makes renames between directories fail.
// Sets NO_NEW_PRIVS itself. Restricts the calling thread and what it later
// creates; on ABI >= 8 every thread of the process (LANDLOCK_RESTRICT_SELF_TSYNC).
[[nodiscard]] Result<LandlockOutcome> apply_landlock_for_abi(int abi);

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
