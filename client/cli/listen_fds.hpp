// systemd's socket-activation handoff (sd_listen_fds(3)): the granted sockets
// at fds 3, 4, ... without close-on-exec, and LISTEN_PID, LISTEN_FDS,
// LISTEN_FDNAMES naming them.
//
// Both halves are split so that the child of `sockbroker run`'s supervisor,
// which shares the supervisor's memory until it execs (supervisor.cpp), can
// finish the handoff without writing anything the supervisor reads again:
// everything that allocates is prepared before the vfork.
#pragma once

#include <sys/types.h>

#include <array>
#include <string>
#include <vector>

#include <sockbroker/client.hpp>

namespace sockbroker::cli {

inline constexpr int kListenFdsStart = 3;  // SD_LISTEN_FDS_START

// The descriptors to hand over, in order, and room to move them through.
struct Handoff {
  explicit Handoff(const std::vector<Grant>& grants);
  std::vector<int> fds;
  std::vector<int> scratch;  // written by place_descriptors
};

// Puts handoff.fds[i] at fd 3+i without close-on-exec, in this process's
// descriptor table: every one is first copied above the target range (with
// close-on-exec, into handoff.scratch), so placing one never overwrites
// another. Touches no memory but handoff.scratch, and allocates only to
// describe an error.
[[nodiscard]] Status place_descriptors(Handoff& handoff);

// The environment PROGRAM runs with: this process's, without inherited
// LISTEN_* variables, and, when there are grants, LISTEN_FDS and
// LISTEN_FDNAMES naming them and LISTEN_PID, which set_pid writes in place.
class ListenEnvironment {
 public:
  explicit ListenEnvironment(const std::vector<Grant>& grants);
  ListenEnvironment(const ListenEnvironment&) = delete;
  ListenEnvironment& operator=(const ListenEnvironment&) = delete;

  // LISTEN_PID=pid: the process that will run the program (exec keeps it).
  // Allocates nothing.
  void set_pid(pid_t pid);
  // For execvpe(3); valid while this object lives.
  [[nodiscard]] char* const* envp() const { return envp_.data(); }

 private:
  std::vector<std::string> added_;
  std::array<char, 32> listen_pid_{};
  std::vector<char*> envp_;
};

}  // namespace sockbroker::cli
