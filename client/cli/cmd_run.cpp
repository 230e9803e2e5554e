// sockbroker run / get: acquire sockets, lock down, exec the service with
// systemd's socket-activation environment (sd_listen_fds(3)).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <vector>

#include <sockbroker/client.hpp>

#include "commands.hpp"
#include "exit_codes.hpp"

namespace sockbroker::cli {
namespace {

constexpr int kListenFdsStart = 3;  // SD_LISTEN_FDS_START

struct RunOptions {
  std::vector<std::string> sockets;
  bool no_lockdown = false;
  bool allow_listen = false;
  bool print_filter = false;
  std::string netns;  // a network namespace to bind netns = "request" sockets in
};

// The namespace the broker should bind in, opened as given: the path names it
// (/run/netns/NAME, /proc/PID/ns/net), the broker checks what it is.
Result<UniqueFd> open_netns(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    int err = errno;
    return Error{SOCKBROKER_E_INVALID, err,
                 "cannot open the network namespace \"" + path + "\": " + std::strerror(err)};
  }
  return fd;
}

// Puts grants[i] at fd 3+i without close-on-exec. Every grant is first moved
// above the target range, so placing one never overwrites another.
Status place_descriptors(std::vector<Grant>& grants) {
  const int n = static_cast<int>(grants.size());
  for (auto& grant : grants) {
    int moved = ::fcntl(grant.fd.get(), F_DUPFD_CLOEXEC, kListenFdsStart + n);
    if (moved < 0) return errno_error("fcntl(F_DUPFD_CLOEXEC)");
    grant.fd.reset(moved);
  }
  for (int i = 0; i < n; ++i) {
    // dup2 leaves the new descriptor without FD_CLOEXEC: it survives exec.
    if (::dup2(grants[static_cast<std::size_t>(i)].fd.get(), kListenFdsStart + i) < 0) return errno_error("dup2");
  }
  return Ok{};
}

Status set_listen_environment(const std::vector<Grant>& grants) {
  if (grants.empty()) {
    ::unsetenv("LISTEN_PID");
    ::unsetenv("LISTEN_FDS");
    ::unsetenv("LISTEN_FDNAMES");
    return Ok{};
  }
  std::string names;
  for (const auto& grant : grants) names += (names.empty() ? "" : ":") + grant.name;
  // exec keeps the pid, so the program finds LISTEN_PID equal to its own.
  if (::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1) != 0 ||
      ::setenv("LISTEN_FDS", std::to_string(grants.size()).c_str(), 1) != 0 ||
      ::setenv("LISTEN_FDNAMES", names.c_str(), 1) != 0) {
    return errno_error("setenv");
  }
  return Ok{};
}

int run(const RunOptions& options, const GlobalOptions& global) {
  LockdownOptions lockdown_options{options.allow_listen};
  if (options.print_filter) {
    auto text = lockdown_filter_text(lockdown_options);
    if (!text) return report(text.error());
    std::cout << *text;
    return kExitOk;
  }
  const std::vector<std::string>& command = global.program;
  if (command.empty()) {
    std::cerr << "sockbroker: run: no program given (usage: sockbroker run -s NAME -- PROGRAM [ARG]...)\n";
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

  if (auto s = place_descriptors(grants); !s) return report(s.error());
  if (auto s = set_listen_environment(grants); !s) return report(s.error());
  if (!options.no_lockdown) {
    if (auto s = lockdown(lockdown_options); !s) {
      std::cerr << "sockbroker: cannot install the lockdown filter: " << s.error().message
                << (s.error().sys_errno ? std::string(": ") + std::strerror(s.error().sys_errno) : "") << '\n';
      return kExitBind;
    }
  }

  std::vector<char*> argv;
  for (const auto& arg : command) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  ::execvp(argv[0], argv.data());
  int err = errno;
  std::cerr << "sockbroker: cannot execute \"" << command.front() << "\": " << std::strerror(err) << '\n';
  return err == ENOENT ? kExitNotFound : kExitCannotExecute;
}

void add_exec_options(CLI::App* cmd, RunOptions& options) {
  cmd->add_flag("--no-lockdown", options.no_lockdown, "do not install the lockdown seccomp filter before exec");
  cmd->add_flag("--allow-listen", options.allow_listen,
                "let the program call listen(2) (which auto-binds an unbound socket)");
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
      "Acquire the named sockets (in order), lock the process down, and exec PROGRAM with them as\n"
      "fds 3, 4, ... (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES), as systemd socket activation does.\n"
      "Under the lockdown filter bind(2), listen(2), io_uring, SCTP and port-stealing socket options\n"
      "fail with EPERM.\n\n"
      "Example: sockbroker run -s web -s metrics -- /usr/sbin/my-server --config /etc/my.conf\n"
      "Container runtime: sockbroker run --netns /run/netns/ctr1 -s web -- ip netns exec ctr1 my-server\n"
      "(the broker binds \"web\" inside ctr1's network namespace; the program serves it from there).");
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
