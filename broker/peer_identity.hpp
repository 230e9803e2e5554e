// Who is on the other end of a control connection, as the kernel says.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>

#include <sockbroker/fd.hpp>

#include "identity.hpp"

namespace sockbroker::broker {

struct Peer {
  policy::PeerIdentity identity;
  // The connecting process itself (SO_PEERPIDFD), not its pid number: what
  // grants are leased to. On kernels without SO_PEERPIDFD (Linux < 6.5), the
  // process found on cred.pid at accept if it runs with cred's uid and gid
  // (peer_identity.cpp, find_connector_by_pid); invalid if none does.
  UniqueFd pidfd;
  // Found without SO_PEERPIDFD: no process, or a dead one, was on cred.pid at
  // accept, so the connecting process had exited by then.
  bool gone = false;
};

// Reads SO_PEERGROUPS and SO_PEERPIDFD (captured by the kernel at connect
// time, like `cred`, so handing the connection to another process changes
// nothing). Called at accept. Touches no /proc file, except
// /proc/PID/status on kernels without SO_PEERPIDFD: see
// resolve_process_identity.
[[nodiscard]] Result<Peer> read_peer(int connection, const ucred& cred);

// The process's systemd unit, executable and cgroup, through /proc, kept only
// if the process behind `pidfd` is still alive after they were read: a pid
// recycled in between cannot lend its unit to the caller. Read when a
// connection's first well-formed request arrives, not at accept: a connection
// that only sends junk (or nothing) costs no /proc read, and the executable
// is the one of the process asking, which must be the connector
// (grant_plan.cpp, Reason::not_the_connector). `read_executable` false skips
// the readlink of /proc/PID/exe: it fails with EACCES for another uid's
// process unless the broker kept CAP_SYS_PTRACE, which it does only while a
// rule uses `executable` (confinement.cpp). The cgroup's path and unit are
// remembered by the cgroup's id, which the pidfd gives (cgroup_id_of): a
// caller in a cgroup seen before costs one ioctl instead of /proc reads.
void resolve_process_identity(policy::PeerIdentity& peer, int pidfd, bool read_executable);

// The id of the cgroup v2 (systemd's hierarchy) the process behind `pidfd` is
// in, which is its directory's inode number there (PIDFD_GET_INFO, Linux
// 6.13); nullopt on older kernels, without a cgroup v2 hierarchy, or when the
// process has gone.
[[nodiscard]] std::optional<std::uint64_t> cgroup_id_of(int pidfd);

// The systemd unit of a process the broker holds a pidfd of (a holder, for
// `list --holders`): nullopt when none is known or the process has gone.
[[nodiscard]] std::optional<std::string> unit_of_process(pid_t pid, int pidfd);

// SO_PEERCRED alone: what the broker needs to count a connection against the
// per-uid limit before it spends anything else on it.
[[nodiscard]] Result<ucred> peer_credentials(int connection);

}  // namespace sockbroker::broker
