// sockbroker help / version, and the answer to a command that does not exist:
// a newcomer's first three commands, so each says something useful.
#include <algorithm>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "commands.hpp"
#include "exit_codes.hpp"
#include "printable.hpp"

namespace sockbroker::cli {
namespace {

// "run, get, list, ...": in the order main() adds them, which is the order of
// the help's own list.
std::string command_names(const CLI::App& app) {
  std::string names;
  for (const CLI::App* command : app.get_subcommands({})) {
    if (!names.empty()) names += ", ";
    names += command->get_name();
  }
  return names;
}

// Lists each command by the first sentence of its description, so that the
// top-level help is an index that fits a screen; `help COMMAND` has the rest.
class IndexFormatter : public CLI::Formatter {
 public:
  std::string make_subcommand(const CLI::App* command) const override {
    std::string text = command->get_description();
    std::replace(text.begin(), text.end(), '\n', ' ');
    if (const auto end = text.find(". "); end != std::string::npos) text.resize(end + 1);
    std::stringstream out;
    CLI::detail::format_help(out, command->get_display_name(true), text, column_width_);
    return out.str();
  }
};

CLI::App* find_command(CLI::App& app, std::string_view name) {
  auto found = app.get_subcommands([&](CLI::App* command) { return command->get_name() == name; });
  return found.empty() ? nullptr : found.front();
}

}  // namespace

int unknown_command(const CLI::App& app, std::string_view name) {
  std::cerr << "sockbroker: unknown command " << sockbroker::quoted(name) << "; the commands are " << command_names(app)
            << " (sockbroker help COMMAND explains one)\n";
  return kExitUsage;
}

int missing_command(const CLI::App& app) {
  std::cerr << "sockbroker: no command given; the commands are " << command_names(app)
            << " (sockbroker help explains them)\n";
  return kExitUsage;
}

Command add_help(CLI::App& app) {
  app.formatter(std::make_shared<IndexFormatter>());
  auto topic = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("help",
                                 "Explain sockbroker and its commands, or one COMMAND with its options and examples.\n\n"
                                 "Examples:\n"
                                 "  sockbroker help          every command, in a sentence each\n"
                                 "  sockbroker help run      run's options and examples (as sockbroker run --help)");
  cmd->add_option("command", *topic, "the command to explain");
  return [&app, topic] {
    if (topic->empty()) {
      // app.help() would describe the command being run, which is this one.
      std::cout << app.get_formatter()->make_help(&app, app.get_name(), CLI::AppFormatMode::Normal);
      return kExitOk;
    }
    const CLI::App* command = find_command(app, *topic);
    if (command == nullptr) return unknown_command(app, *topic);
    std::cout << command->help(app.get_name());
    return kExitOk;
  };
}

Command add_version(CLI::App& app, std::string version_line) {
  app.add_subcommand("version",
                     "Print the version of this sockbroker command (as --version). The broker's own is the first line "
                     "of\nsockbroker status.");
  return [line = std::move(version_line)] {
    std::cout << line << '\n';
    return kExitOk;
  };
}

}  // namespace sockbroker::cli
