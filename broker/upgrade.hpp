// Upgrade in place: SIGUSR2 or `sockbroker upgrade` make the broker execute
// its binary from disk again (a package upgrade replaced it), keeping its pid
// (systemd's MAINPID, every holder's view of it), the control socket with its
// queue, every bound socket, the audit file and the disposer. The running
// image writes what it holds as named descriptors (handover.hpp) plus the
// state memfd, lists them in a manifest memfd, and passes `--upgrade-from FD`;
// the new image adopts them as after a restart, checked against the policy.
//
// What if the new image cannot start:
//  - the exec fails (no file, not executable, not ELF): execveat returns,
//    the running image marks its descriptors close-on-exec again and serves on;
//  - it starts and dies (a broken build): the keeper (keeper.hpp), which got
//    copies of the sockets, the control socket and the state just before the
//    exec, keeps the ports bound and hands everything to the next sockbrokerd;
//    under systemd, Restart= starts that one at once, and the file
//    descriptor store (kept in step just before the exec) has it all too.
//
// The seccomp filter and the narrowed capabilities survive execve: the new
// image runs under the old image's filter (it checks, and does not try to
// confine itself again), which therefore allows execveat of a descriptor
// (AT_EMPTY_PATH) and what the dynamic loader and libc start-up call. Neither
// loosens the sandbox: an image executed so has no more power than the one
// that executed it. A release that needs new system calls needs a restart.
#pragma once

#include <string>
#include <vector>

#include <sockbroker/fd.hpp>

#include "audit.hpp"
#include "broker_state.hpp"
#include "descriptor_disposer.hpp"
#include "fd_store.hpp"
#include "keeper.hpp"
#include "logger.hpp"

namespace sockbroker::broker {

// The broker's binary, as /proc/self/exe names it at start (" (deleted)"
// stripped: after a package upgrade the path names the new file).
[[nodiscard]] std::string own_binary_path();

// The command line the new image gets: the running one's, without a previous
// --upgrade-from.
[[nodiscard]] std::vector<std::string> upgrade_arguments(int argc, char** argv);

// Whether this process already runs under a seccomp filter (an image started
// by an upgrade in place): /proc/self/status "Seccomp: 2".
[[nodiscard]] bool already_confined();

struct UpgradeCarry {
  int control = -1;
  Audit* audit = nullptr;
  int disposer = -1;
  FdStore* fd_store = nullptr;  // its state memfd is the one handed on
  Keeper* keeper = nullptr;      // holds copies while the new image starts
  int audit_spill = -1;           // the file unwritten audit lines outlive a stop in (audit_spill.hpp)
};

// Executes `binary` with `arguments` and --upgrade-from. Returns only if the
// exec failed, with every descriptor close-on-exec again.
[[nodiscard]] Error reexecute(const std::string& binary, const std::vector<std::string>& arguments,
                              BrokerState& state, const UpgradeCarry& carry, spdlog::logger& log);

}  // namespace sockbroker::broker
