// sockbroker: the command-line tool for services and operators.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <array>
#include <iostream>
#include <map>
#include <string_view>

#include "commands.hpp"
#include "exit_codes.hpp"

namespace {

// The command named on the command line: the first word before "--" that is
// neither an option nor the value of --control; "" when there is none. (With
// "--help run" CLI11 shows run's help, so help before the name changes nothing.)
std::string_view named_command(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg(argv[i]);
    if (arg == "--") break;
    if (arg == "--control") {
      ++i;
      continue;
    }
    if (arg.starts_with("-")) continue;
    return arg;
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sockbroker::cli;
  CLI::App app{
      "sockbroker: ask the socket broker for named, already-bound sockets.\n\n"
      "sockbrokerd (root) binds every socket the operator's policy names; services ask for them by\n"
      "name and run without the right to bind anything themselves.\n\n"
      "Examples:\n"
      "  sockbroker run -s web -- /usr/bin/my-server    socket 'web' as fd 3 (LISTEN_FDS), locked down\n"
      "  sockbroker list                                what may I acquire?\n"
      "  sockbroker check --policy /etc/sockbroker      validate a policy before reloading it",
      "sockbroker"};
  app.require_subcommand(1);
  app.fallthrough();  // --control works before or after the command name
  GlobalOptions global;
  app.add_option("--control", global.control,
                 "the broker's control socket (default: $SOCKBROKER_CONTROL, else /run/sockbroker/control.sock)");
  app.set_version_flag("--version", std::string("sockbroker ") + SOCKBROKER_VERSION);

  // CLI11 builds every option of a command when it is added (~0.3 ms for all
  // of them, on the start-up path of every `sockbroker run`): only the named
  // command is built, and all of them when none is named, or an unknown one
  // (so that help and the error list them).
  using Adder = Command (*)(CLI::App&, const GlobalOptions&);
  static constexpr std::array<std::pair<std::string_view, Adder>, 10> kCommands{{
      {"run", add_run},
      {"get", add_get},
      {"list", add_list},
      {"check", [](CLI::App& a, const GlobalOptions&) { return add_check(a); }},
      {"reload", add_reload},
      {"revoke", add_revoke},
      {"upgrade", add_upgrade},
      {"status", add_status},
      {"audit", add_audit},
      {"doctor", [](CLI::App& a, const GlobalOptions&) { return add_doctor(a); }},
  }};
  const std::string_view named = named_command(argc, argv);
  const bool known = std::any_of(kCommands.begin(), kCommands.end(), [&](const auto& c) { return c.first == named; });
  std::map<CLI::App*, Command> commands;
  for (const auto& [name, add] : kCommands) {
    if (known && name != named) continue;
    Command command = add(app, global);
    commands[app.get_subcommands({}).back()] = std::move(command);
  }

  // Everything after the first "--" is the program to exec, taken verbatim:
  // none of it may be mistaken for an option of ours.
  int ours = argc;
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--") {
      ours = i;
      break;
    }
  }
  for (int i = ours + 1; i < argc; ++i) global.program.emplace_back(argv[i]);
  try {
    app.parse(ours, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }
  for (auto& [subcommand, command] : commands) {
    if (subcommand->parsed()) return command();
  }
  return kExitUsage;
}
