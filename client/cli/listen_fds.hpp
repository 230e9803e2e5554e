// systemd's socket-activation handoff (sd_listen_fds(3)): the granted sockets
// at fds 3, 4, ... without close-on-exec, and LISTEN_PID, LISTEN_FDS,
// LISTEN_FDNAMES naming them.
#pragma once

#include <sys/types.h>

#include <vector>

#include <sockbroker/client.hpp>

namespace sockbroker::cli {

inline constexpr int kListenFdsStart = 3;  // SD_LISTEN_FDS_START

// Puts grants[i] at fd 3+i without close-on-exec. Every grant is first moved
// above the target range, so placing one never overwrites another.
[[nodiscard]] Status place_descriptors(std::vector<Grant>& grants);

// LISTEN_PID is `pid`, the process that will run the program (exec keeps it).
// No grants: the three variables are removed, so that none is inherited.
[[nodiscard]] Status set_listen_environment(const std::vector<Grant>& grants, pid_t pid);

}  // namespace sockbroker::cli
