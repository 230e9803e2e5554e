// sockbroker reload / revoke: the administrator's levers on a running broker.
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include <sockbroker/client.hpp>

#include "commands.hpp"
#include "exit_codes.hpp"

namespace sockbroker::cli {
namespace {

struct AdminOptions {
  bool json = false;
  std::string name;
};

int print_outcome(const AdminOutcome& outcome, bool json, int failure_exit) {
  if (json) {
    std::cout << nlohmann::json{{"ok", outcome.ok},
                                {"message", outcome.message},
                                {"details", outcome.details},
                                {"failed_sockets", outcome.failed_sockets}}
                     .dump(2)
              << '\n';
  } else {
    std::ostream& out = outcome.ok ? std::cout : std::cerr;
    out << (outcome.ok ? "" : "sockbroker: ") << outcome.message << '\n';
    for (const auto& line : outcome.details) out << "  " << line << '\n';
  }
  return outcome.ok ? kExitOk : failure_exit;
}

}  // namespace

Command add_reload(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<AdminOptions>();
  auto* cmd = app.add_subcommand(
      "reload",
      "Administrators: make the broker re-read its policy now (as SIGHUP does) and print the outcome.\n"
      "Atomic: an invalid policy changes nothing and its errors are printed (exit 78). Sockets whose\n"
      "entry is unchanged keep their kernel socket; changed ones are bound afresh; removed ones closed.");
  cmd->add_flag("--json", options->json, "print JSON for scripts");
  return [options, &global] {
    auto client = Client::connect(global.control);
    if (!client) return report(client.error());
    auto outcome = client->reload();
    if (!outcome) return report(outcome.error());
    // Applied with sockets not bound: the broker failed to bind (71), not the policy (78).
    return print_outcome(*outcome, options->json, outcome->failed_sockets.empty() ? kExitConfig : kExitBind);
  };
}

Command add_revoke(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<AdminOptions>();
  auto* cmd = app.add_subcommand(
      "revoke",
      "Administrators: shut the named socket down for every process holding it and bind it afresh.\n"
      "Listening sockets stop accepting; future grants get the new socket, so holders must acquire it\n"
      "again.\n\n"
      "Example: sockbroker revoke web");
  cmd->add_option("name", options->name, "the socket to revoke")->required();
  cmd->add_flag("--json", options->json, "print JSON for scripts");
  return [options, &global] {
    auto client = Client::connect(global.control);
    if (!client) return report(client.error(), options->name, "revoke");
    auto outcome = client->revoke(options->name);
    if (!outcome) return report(outcome.error(), options->name, "revoke");
    return print_outcome(*outcome, options->json, kExitBind);
  };
}

}  // namespace sockbroker::cli
