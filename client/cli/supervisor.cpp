#include "supervisor.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

#include "bind_server.hpp"
#include "descriptor_channel.hpp"
#include "exit_codes.hpp"
#include "listen_fds.hpp"
#include "lockdown_layers.hpp"
#include "revoke_watcher.hpp"

namespace sockbroker::cli {
namespace {

// What an operator or a service manager sends a service. SIGCHLD is the
// supervisor's own; SIGKILL and SIGSTOP cannot be caught (systemd's SIGKILL
// reaches the whole unit anyway).
constexpr int kForwarded[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, SIGALRM};

void say(const std::string& line) {
  std::string out = "sockbroker run: " + line + "\n";
  (void)!::write(STDERR_FILENO, out.data(), out.size());
}

int status_to_exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

// What the program's process needs, all of it prepared before the vfork:
// that process shares the supervisor's memory until it execs, so it writes
// only here (scratch descriptors, LISTEN_PID) and on the stack below
// start_child's frame, and allocates nothing but to describe an error, which
// is safe only because this process has no other thread whose malloc lock
// the vfork could catch held.
struct ChildStart {
  std::vector<char*> argv;  // PATH searched
  Handoff handoff;
  ListenEnvironment environment;
  const char* program_name;
  int channel;  // the listener goes back through it
  sigset_t original_mask;
  pid_t supervisor;
};

// The child's side: sockets in place, the filter, then PROGRAM.
[[noreturn]] void run_child(ChildStart& start) {
  // The dispositions are this process's own copy (no CLONE_SIGHAND); every
  // signal stays blocked until they are reset, so that no handler of the
  // supervisor runs here on its memory.
  for (int sig : kForwarded) ::signal(sig, SIG_DFL);
  ::sigprocmask(SIG_SETMASK, &start.original_mask, nullptr);
  // PROGRAM lives no longer than its supervisor, as it would were it `sockbroker
  // run` itself: killing that pid ends the service, and no program is left
  // running whose binds could no longer be answered.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 || ::getppid() != start.supervisor) _exit(kExitBind);
  if (auto s = place_descriptors(start.handoff); !s) {
    say(s.error().describe());
    _exit(kExitBind);
  }
  start.environment.set_pid(::getpid());
  // The Landlock layer is the supervisor's, inherited: a domain of its own
  // here would be a sibling of the supervisor's, and Landlock forbids a
  // process to look into another domain than its own or one nested in it
  // (the supervisor could no longer read the program's bind address).
  auto listener = lockdown_layers::apply_supervised_seccomp();
  if (!listener) {
    if (listener.error().sys_errno == EBUSY) {
      // The kernel gives a process tree one user-notification listener.
      say("cannot supervise: this process is already supervised (by another `sockbroker run`, or a container "
          "runtime's seccomp agent); run the inner `sockbroker run` with --no-supervise");
    } else {
      say("cannot install the lockdown filter: " + listener.error().describe());
    }
    _exit(kExitBind);
  }
  if (auto s = send_descriptor(start.channel, listener->get(), std::span<const char>("l", 1)); !s) {
    say(s.error().describe());
    _exit(kExitBind);
  }
  listener->reset();  // the channel and the grants' first copies are close-on-exec
  ::execvpe(start.argv[0], start.argv.data(), start.environment.envp());
  const int err = errno;
  say(std::string("cannot execute \"") + start.program_name + "\": " + std::strerror(err));
  _exit(err == ENOENT ? kExitNotFound : kExitCannotExecute);
}

// Starts run_child in a process that shares this one's memory and stack and
// whose start suspends this one until it execs or exits (vfork, as
// posix_spawn and CPython's subprocess do): fork would copy the page tables
// and then fault in a private copy of every page either side writes, for a
// process about to exec anyway, about 80 faults more per `sockbroker run`.
// run_child never returns, so it leaves this frame as it found it.
pid_t start_child(ChildStart& start) {
  sigset_t all, before;
  sigfillset(&all);
  ::sigprocmask(SIG_SETMASK, &all, &before);
  const pid_t pid = ::vfork();
  if (pid == 0) run_child(start);
  const int err = errno;
  ::sigprocmask(SIG_SETMASK, &before, nullptr);
  errno = err;
  return pid;
}

// The processes whose parent is this one: orphans of PROGRAM's tree come
// here (subreaper), and one of them is what a daemonizing program left.
std::vector<pid_t> own_children() {
  std::vector<pid_t> out;
  const pid_t self = ::getpid();
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return out;
  while (dirent* entry = ::readdir(proc)) {
    char* end = nullptr;
    const long pid = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || pid <= 0) continue;
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE* stat = std::fopen(path, "re");
    if (stat == nullptr) continue;
    char text[512] = {};
    const std::size_t n = std::fread(text, 1, sizeof text - 1, stat);
    std::fclose(stat);
    // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
    const char* close = std::strrchr(text, ')');
    if (n == 0 || close == nullptr) continue;
    char state = 0;
    long parent = 0;
    if (std::sscanf(close + 1, " %c %ld", &state, &parent) == 2 && parent == self) out.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(proc);
  return out;
}

// Ends this process by `sig` (core dumps aside), as the program ended.
[[noreturn]] void die_of(int sig) {
  ::signal(sig, SIG_DFL);
  sigset_t only;
  sigemptyset(&only);
  sigaddset(&only, sig);
  ::sigprocmask(SIG_UNBLOCK, &only, nullptr);
  ::kill(::getpid(), sig);
  // A signal whose default is not to terminate (SIGCHLD, SIGCONT...) or one
  // that cannot be raised: the status the shell would have shown.
  _exit(128 + sig);
}

// Acts on a notice as --on-revoke says; true: exit now.
bool revoked(const RevokeNotice& notice, OnRevoke action, const std::vector<pid_t>& targets) {
  const std::string what = "the broker revoked \"" + notice.socket + "\": " + notice.message;
  switch (action) {
    case OnRevoke::ignore:
      say(what + " (--on-revoke=ignore: the program runs on)");
      return false;
    case OnRevoke::term:
      say(what + "; sending SIGTERM to the program (--on-revoke=term)");
      for (pid_t pid : targets) ::kill(pid, SIGTERM);
      return false;
    case OnRevoke::exit:
      say(what + "; killing the program and exiting 75 (--on-revoke=exit)");
      for (pid_t pid : targets) ::kill(pid, SIGKILL);
      for (pid_t pid : own_children()) ::kill(pid, SIGKILL);
      return true;
  }
  return false;
}

}  // namespace

int supervise(Supervision run) {
  sigset_t handled, original;
  sigemptyset(&handled);
  for (int sig : kForwarded) sigaddset(&handled, sig);
  sigaddset(&handled, SIGCHLD);
  // Blocked before the child starts, so that no signal is lost in between;
  // the child unblocks before it execs.
  if (::sigprocmask(SIG_BLOCK, &handled, &original) != 0) return report(errno_error("sigprocmask"));
  // Orphans of PROGRAM's tree (a daemon's, an upgraded nginx's) become ours.
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) return report(errno_error("prctl(PR_SET_CHILD_SUBREAPER)"));

  std::set<std::uint64_t> granted;
  for (const auto& grant : run.grants) {
    struct stat st {};
    if (::fstat(grant.fd.get(), &st) == 0) granted.insert(static_cast<std::uint64_t>(st.st_ino));
  }
  // Landlock before the child starts, once for both: the program's domain is
  // then the supervisor's (see run_child).
  auto landlock = lockdown_layers::apply_landlock();
  if (!landlock) return report(landlock.error());
  if (!landlock->note.empty()) say("note: " + landlock->note);
  // Before the program runs: a revoke from then on is heard.
  RevokeWatcher watcher(run.control);
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) return report(errno_error("socketpair"));
  UniqueFd ours(pair[0]), theirs(pair[1]);

  std::vector<char*> argv;
  for (auto& arg : run.program) argv.push_back(arg.data());
  argv.push_back(nullptr);
  ChildStart start{.argv = std::move(argv),
                   .handoff = Handoff(run.grants),
                   .environment = ListenEnvironment(run.grants),
                   .program_name = run.program.front().c_str(),
                   .channel = theirs.get(),
                   .original_mask = original,
                   .supervisor = ::getpid()};
  const pid_t program = start_child(start);
  if (program < 0) return report(errno_error("vfork"));
  theirs.reset();
  run.grants.clear();  // the child holds them; the supervisor keeps none

  char byte;
  UniqueFd listener = receive_descriptor(ours.get(), {&byte, 1});
  ours.reset();
  std::optional<BindServer> server;
  if (listener) {
    // The supervisor binds nothing itself either (but netlink, on the
    // program's behalf); it may look into its program (pidfd_getfd). After
    // the child started: the program's filter must not stack on this one.
    auto filtered = lockdown_layers::apply_supervisor_seccomp();
    if (!filtered) {
      say("cannot lock the supervisor down: " + filtered.error().describe() + "; stopping the program");
      ::kill(program, SIGKILL);
    }
    server.emplace(std::move(listener), run.control, std::move(granted));
  }

  UniqueFd signals(::signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signals) {
    say(errno_error("signalfd").describe() + "; stopping the program");
    ::kill(program, SIGKILL);
  }
  bool program_running = true;
  int last_status = 0;
  int last_raw_status = 0;
  bool stopped_for_revoke = false;  // the SIGTERM that ended the program was ours
  for (;;) {
    // Reap first: with no child left, the tree is gone.
    for (;;) {
      int status = 0;
      const pid_t reaped = ::waitpid(-1, &status, WNOHANG);
      if (reaped > 0) {
        last_status = status_to_exit_code(status);
        last_raw_status = status;
        if (reaped == program) program_running = false;
        continue;
      }
      if (reaped < 0 && errno == ECHILD) {
        // A revoke can end the tree by itself (the program's accept(2) fails
        // on the shut-down socket and it exits) before its notice was read:
        // read what is queued now, so that the program's end is explained
        // and --on-revoke decides the exit status as it would have.
        pollfd queued{watcher.fd(), POLLIN, 0};
        if (queued.fd >= 0 && ::poll(&queued, 1, 0) == 1) {
          for (const auto& notice : watcher.service()) {
            if (revoked(notice, run.on_revoke, {})) return kExitQuota;
            if (run.on_revoke == OnRevoke::term) stopped_for_revoke = true;
          }
        }
        // Stopped because its socket was revoked: a failure, so that
        // Restart=on-failure brings it back with a fresh socket.
        if (stopped_for_revoke) return kExitQuota;
        // Killed by a signal from outside (systemctl stop's SIGTERM): die of
        // it too, as the program did, so that its service manager sees a
        // clean stop, not exit status 143.
        if (WIFSIGNALED(last_raw_status)) die_of(WTERMSIG(last_raw_status));
        return last_status;
      }
      break;
    }
    pollfd watched[3] = {{signals.get(), POLLIN, 0},
                         {server ? server->listener() : -1, POLLIN, 0},
                         {watcher.fd(), POLLIN, 0}};
    if (::poll(watched, 3, watcher.timeout_ms()) < 0) {
      if (errno == EINTR) continue;
      say(errno_error("poll").describe());
      return kExitBind;
    }
    if (server && (watched[1].revents & POLLIN) != 0) {
      if (auto s = server->serve_one(); !s) say(s.error().describe());
    }
    if (server && (watched[1].revents & (POLLHUP | POLLERR)) != 0 && (watched[1].revents & POLLIN) == 0) {
      // Every process under the filter has exited: no more calls to answer.
      server.reset();
    }
    if (watched[2].fd < 0 || watched[2].revents != 0) {
      for (const auto& notice : watcher.service()) {
        if (revoked(notice, run.on_revoke, program_running ? std::vector<pid_t>{program} : own_children())) {
          return kExitQuota;
        }
        if (run.on_revoke == OnRevoke::term) stopped_for_revoke = true;
      }
    }
    if ((watched[0].revents & POLLIN) != 0) {
      signalfd_siginfo info{};
      while (::read(signals.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        const int sig = static_cast<int>(info.ssi_signo);
        if (sig == SIGCHLD) continue;  // reaped at the top of the loop
        if (program_running) {
          ::kill(program, sig);
        } else {
          for (pid_t child : own_children()) ::kill(child, sig);
        }
      }
    }
  }
}

}  // namespace sockbroker::cli
