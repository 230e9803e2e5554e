// sockbroker run / get: acquire sockets, lock down, exec the service with
// systemd's socket-activation environment (sd_listen_fds(3)).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <vector>

#include <sockbroker/client.hpp>

#include "commands.hpp"
#include "exit_codes.hpp"
#include "listen_fds.hpp"
#include "lockdown_filter.hpp"
#include "supervisor.hpp"

namespace sockbroker::cli {
namespace {

struct RunOptions {
  std::vector<std::string> sockets;
  bool no_lockdown = false;
  bool no_supervise = false;
  bool allow_listen = false;
  bool print_filter = false;
  std::string netns;  // a network namespace to bind netns = "request" sockets in
  OnRevoke on_revoke = OnRevoke::term;
};

// The namespace the broker should bind in, opened as given: the path names it
// (/run/netns/NAME, /proc/PID/ns/net), the broker checks what it is. One the
// caller may not open is a permission failure (77), not a usage error.
Result<UniqueFd> open_netns(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    int err = errno;
    const int code = err == EACCES || err == EPERM ? SOCKBROKER_E_DENIED : SOCKBROKER_E_INVALID;
    return Error{code, err, "cannot open the network namespace \"" + path + "\": " + std::strerror(err)};
  }
  return fd;
}

[[noreturn]] int exec_program(const std::vector<std::string>& command, const ListenEnvironment& environment) {
  std::vector<char*> argv;
  for (const auto& arg : command) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  ::execvpe(argv[0], argv.data(), environment.envp());
  int err = errno;
  std::cerr << "sockbroker: cannot execute \"" << command.front() << "\": " << std::strerror(err) << '\n';
  std::exit(err == ENOENT ? kExitNotFound : kExitCannotExecute);
}

int run(const RunOptions& options, const GlobalOptions& global) {
  const bool supervised = !options.no_lockdown && !options.no_supervise;
  if (options.print_filter) {
    auto text = lockdown_filter::filter_text(
        supervised ? lockdown_filter::Variant::supervised : lockdown_filter::Variant::unsupervised, options.allow_listen);
    if (!text) return report(text.error());
    std::cout << *text;
    return kExitOk;
  }
  const std::vector<std::string>& command = global.program;
  if (command.empty()) {
    std::cerr << "sockbroker: run: no program given (usage: sockbroker run [-s NAME]... -- PROGRAM [ARG]...)\n";
    return kExitUsage;
  }

  std::vector<Grant> grants;
  if (!options.sockets.empty()) {
    UniqueFd netns;
    if (!options.netns.empty()) {
      auto opened = open_netns(options.netns);
      if (!opened) return report(opened.error());
      netns = std::move(*opened);
    }
    auto client = Client::connect(global.control);
    if (!client) return report(client.error(), options.sockets.front());
    for (const auto& name : options.sockets) {
      auto grant = netns ? client->acquire_in_netns(name, netns.get()) : client->acquire(name);
      if (!grant) return report(grant.error(), name);
      grants.push_back(std::move(*grant));
    }
  }  // the control connection closes here (and is close-on-exec regardless)

  if (supervised) return supervise(Supervision{command, std::move(grants), global.control, options.on_revoke});

  // Unsupervised: PROGRAM replaces this process (same pid, LISTEN_PID).
  Handoff handoff(grants);
  if (auto s = place_descriptors(handoff); !s) return report(s.error());
  ListenEnvironment environment(grants);
  environment.set_pid(::getpid());
  if (!options.no_lockdown) {
    if (auto s = lockdown(LockdownOptions{options.allow_listen}); !s) {
      std::cerr << "sockbroker: cannot install the lockdown filter: " << s.error().describe() << '\n';
      return kExitBind;
    }
  }
  exec_program(command, environment);
}

void add_exec_options(CLI::App* cmd, RunOptions& options) {
  cmd->add_flag("--no-supervise", options.no_supervise,
                "exec PROGRAM in place, unsupervised: its own bind(2) then fails with EPERM (only the -s sockets "
                "serve; for programs written for socket activation)");
  cmd->add_flag("--no-lockdown", options.no_lockdown,
                "no lockdown and no supervision: PROGRAM may bind what its user may (debugging)");
  cmd->add_flag("--allow-listen", options.allow_listen,
                "with --no-supervise: let PROGRAM call listen(2), which on an unbound socket binds a port the kernel "
                "chooses (supervised, listen works on the sockets the broker granted, and only on them)");
  cmd->add_option("--on-revoke", options.on_revoke,
                  "supervised: what to do when the broker revokes one of PROGRAM's sockets (an administrator's "
                  "revoke, or a reload that replaced it): term (SIGTERM, so its service manager restarts it), "
                  "exit (kill it and exit 75 at once), ignore")
      ->transform(CLI::CheckedTransformer(std::map<std::string, OnRevoke>{{"term", OnRevoke::term},
                                                                          {"exit", OnRevoke::exit},
                                                                          {"ignore", OnRevoke::ignore}}))
      ->option_text("ACTION")
      ->default_str("term");
  cmd->add_flag("--print-filter", options.print_filter, "print the lockdown filter as text and exit");
  cmd->add_option("--netns", options.netns,
                  "a network namespace (/run/netns/NAME, /proc/PID/ns/net) sent with every request: "
                  "netns = \"request\" sockets are bound inside it, others ignore it")
      ->option_text("PATH");
  cmd->footer("Everything after \"--\" is the program and its arguments, passed as they are.");
}

}  // namespace

Command add_run(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand(
      "run",
      "Run PROGRAM unprivileged with the sockets the broker's policy gives it.\n\n"
      "Supervised (the default), PROGRAM's own bind(2) of an address the policy has is answered with\n"
      "the broker's socket, so unmodified servers work: nginx, haproxy, Go, Node, Python. Any other\n"
      "bind fails with EACCES; listen(2) works on granted sockets only. sockbroker run stays as\n"
      "PROGRAM's parent, forwards signals and exits with its status.\n"
      "The -s sockets are passed as fds 3, 4, ... (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES), as\n"
      "systemd socket activation does. io_uring, SCTP and port-stealing socket options fail with\n"
      "EPERM; SO_REUSEADDR and SO_REUSEPORT succeed without effect.\n\n"
      "Examples:\n"
      "  sockbroker run -- nginx -g 'daemon off;'          nginx binds port 80; the broker's socket answers\n"
      "  sockbroker run -s web -- /usr/sbin/my-server      socket 'web' as fd 3\n"
      "  sockbroker run --netns /run/netns/ctr1 -s web -- ip netns exec ctr1 my-server\n"
      "                                                  the broker binds 'web' inside ctr1's namespace");
  cmd->add_option("-s,--socket", options->sockets, "a socket to acquire (repeatable; fd 3 is the first)");
  add_exec_options(cmd, *options);
  return [options, &global] { return run(*options, global); };
}

Command add_get(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<RunOptions>();
  auto name = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("get", "Same as `run -s NAME`, for one socket.\n\n"
                                        "Example: sockbroker get web -- /usr/sbin/my-server\n"
                                        "In a container's namespace: sockbroker get --netns /run/netns/ctr1 web -- my-server");
  cmd->add_option("name", *name, "the socket to acquire")->required();
  add_exec_options(cmd, *options);
  return [options, name, &global] {
    options->sockets = {*name};
    return run(*options, global);
  };
}

}  // namespace sockbroker::cli
