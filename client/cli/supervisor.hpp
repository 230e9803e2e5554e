// `sockbroker run`, supervised (the default): PROGRAM runs as its child under
// a filter that sends its bind(2) and listen(2) here (bind_server.hpp), and
// `sockbroker run` stays as its parent, unprivileged and locked down itself
// (it binds nothing but netlink), until every process of PROGRAM's tree has
// exited:
//
//   sockbroker run (supervisor) ── vfork ─▶ child: sockets at 3, 4, ...,
//        ▲  forwards signals                 LISTEN_PID = its pid, lockdown
//        │  reaps the tree (subreaper)       (bind, listen → supervisor),
//        └── listener fd ◀── SCM_RIGHTS ──── exec PROGRAM
//
// It keeps a connection to the broker (revoke_watcher.hpp) and, when a revoke
// or a reload ends one of its grants, acts as --on-revoke says: by default
// SIGTERM to PROGRAM, so that a deaf server exits and its service manager's
// Restart= brings it back with a fresh socket.
//
// It forwards every signal an operator or service manager sends (SIGHUP
// reloads nginx, SIGUSR2 upgrades it, SIGQUIT drains it) to PROGRAM, or, once
// PROGRAM itself has exited (a daemon that forked, an upgraded nginx), to its
// own children, which the processes of the tree become when their parents
// exit (PR_SET_CHILD_SUBREAPER). It exits with the status of the last
// process of the tree to exit: PROGRAM's, unless it left others running. A
// program killed by signal N kills `sockbroker run` with N too (systemctl
// stop's SIGTERM is then a clean stop), except when the supervisor itself sent
// the SIGTERM for a revoke: then it exits 75.
#pragma once

#include <string>
#include <vector>

#include <sockbroker/client.hpp>

namespace sockbroker::cli {

// What `sockbroker run` does when the broker says a revoke or a reload ended
// one of its grants (--on-revoke).
enum class OnRevoke {
  term,    // SIGTERM to PROGRAM (the default); then exit 75, so Restart=on-failure restarts it
  exit,    // SIGKILL to PROGRAM's tree, and exit 75 (EX_TEMPFAIL) at once
  ignore,  // say so on stderr, nothing else
};

struct Supervision {
  std::vector<std::string> program;  // argv, PATH searched
  std::vector<Grant> grants;         // -s sockets, handed over as LISTEN_FDS
  std::string control;               // the broker's control socket ("" for the default)
  OnRevoke on_revoke = OnRevoke::term;
};

// Returns the status `sockbroker run` exits with.
[[nodiscard]] int supervise(Supervision run);

}  // namespace sockbroker::cli
