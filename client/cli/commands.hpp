// The sockbroker subcommands. Each registers itself on the CLI11 app and
// returns the callback main() runs when it was chosen.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace sockbroker::cli {

// Options every command may use, given before or after the command name.
struct GlobalOptions {
  std::string control;  // empty: $SOCKBROKER_CONTROL, else the default
  std::vector<std::string> program;  // the arguments after "--"
};

using Command = std::function<int()>;

Command add_run(CLI::App& app, const GlobalOptions& global);
Command add_get(CLI::App& app, const GlobalOptions& global);
Command add_list(CLI::App& app, const GlobalOptions& global);
Command add_check(CLI::App& app);
Command add_reload(CLI::App& app, const GlobalOptions& global);
Command add_revoke(CLI::App& app, const GlobalOptions& global);
Command add_upgrade(CLI::App& app, const GlobalOptions& global);
Command add_status(CLI::App& app, const GlobalOptions& global);
Command add_audit(CLI::App& app, const GlobalOptions& global);
Command add_doctor(CLI::App& app);

}  // namespace sockbroker::cli
