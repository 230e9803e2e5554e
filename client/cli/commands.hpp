// The sockbroker subcommands. Each registers itself on the CLI11 app and
// returns the callback main() runs when it was chosen.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <string_view>
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
// `help [COMMAND]` prints app's help, or COMMAND's; add_help also makes app's
// own help an index, each command in the first sentence of its description.
// `version` prints version_line.
Command add_help(CLI::App& app);
Command add_version(CLI::App& app, std::string version_line);

// The one line for a command name app does not have, or for none at all,
// naming the commands it has; both return the usage exit code.
int unknown_command(const CLI::App& app, std::string_view name);
int missing_command(const CLI::App& app);

}  // namespace sockbroker::cli
