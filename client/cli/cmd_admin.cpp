// sockbroker reload / revoke: the administrator's levers on a running broker.
#include <chrono>
#include <iostream>
#include <thread>
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

Command add_upgrade(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<AdminOptions>();
  auto* cmd = app.add_subcommand(
      "upgrade",
      "Administrators: make the broker re-execute its binary from disk in place (as SIGUSR2 does), after a\n"
      "package upgrade: same pid, same control socket, the same bound sockets and leases, counters kept.\n"
      "Waits until the new image serves (exit 0) or says why not (71: the exec failed, the old image\n"
      "serves on; 69: no answer within 10 s).");
  cmd->add_flag("--json", options->json, "print JSON for scripts");
  return [options, &global] {
    auto client = Client::connect(global.control);
    if (!client) return report(client.error());
    auto before = client->status();
    if (!before) return report(before.error());
    auto outcome = client->upgrade();
    if (!outcome) return report(outcome.error());
    if (!outcome->ok) return print_outcome(*outcome, options->json, kExitDenied);
    // The old image closes every connection before it executes the new one:
    // ask again, on fresh connections, until the count of upgrades moves.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      auto fresh = Client::connect(global.control);
      if (!fresh) continue;
      auto after = fresh->status();
      if (!after) continue;
      if (after->upgrades != before->upgrades) {
        AdminOutcome done{true, "upgraded in place: sockbrokerd " + after->version + ", pid " + std::to_string(after->pid) +
                                    ", " + std::to_string(after->sockets_bound) + " sockets bound",
                          {}, {}};
        return print_outcome(done, options->json, kExitBind);
      }
      // The old image answers again only once its exec failed (it serves
      // nothing between its answer to upgrade and the exec).
      AdminOutcome failed{false, "the broker could not execute its new image and serves on with the old one "
                                 "(its log and the audit event upgrade_failed say why)",
                          {}, {}};
      return print_outcome(failed, options->json, kExitBind);
    }
    return report(Error{SOCKBROKER_E_UNAVAILABLE, ETIMEDOUT, "the broker did not answer within 10 s of upgrading"});
  };
}

}  // namespace sockbroker::cli
