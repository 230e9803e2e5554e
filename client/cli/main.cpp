// sockbroker: the command-line tool for services and operators.
#include <CLI/CLI.hpp>

#include <cctype>
#include <iostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "commands.hpp"
#include "exit_codes.hpp"

namespace {

// CLI11's own failure message is two lines, the second a generic "Run with
// --help"; every other failure of this command is one line that starts with
// "sockbroker:", so a usage error is too, and it names the help that fits.
std::string usage_line(const CLI::App* app, const CLI::Error& error) {
  std::string what = error.what();
  for (char& c : what) {
    if (c == '\n') c = ' ';
  }
  // "The following argument ..." reads as a sentence of its own; after the
  // prefix it continues ours, as every other message of the command does.
  if (what.size() > 1 && std::isupper(static_cast<unsigned char>(what[0])) != 0 &&
      std::islower(static_cast<unsigned char>(what[1])) != 0) {
    what[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(what[0])));
  }
  const auto chosen = app->get_subcommands();
  const std::string topic = chosen.empty() ? "" : " " + chosen.front()->get_name();
  return "sockbroker: " + what + " (see sockbroker help" + topic + ")\n";
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
      "  sockbroker check --policy /etc/sockbroker      validate a policy before reloading it\n"
      "  sockbroker help run                            one command's options and examples",
      "sockbroker"};
  // At most one: none is answered below with the list of commands, which
  // CLI11's "A subcommand is required" does not give.
  app.require_subcommand(0, 1);
  app.fallthrough();  // --control works before or after the command name
  app.failure_message(usage_line);
  GlobalOptions global;
  app.add_option("--control", global.control,
                 "the broker's control socket (default: $SOCKBROKER_CONTROL, else /run/sockbroker/control.sock)");
  const std::string version_line = std::string("sockbroker ") + SOCKBROKER_VERSION;
  app.set_version_flag("--version", version_line);

  std::vector<std::pair<CLI::App*, Command>> commands;
  auto add = [&](Command command) { commands.emplace_back(app.get_subcommands({}).back(), std::move(command)); };
  add(add_run(app, global));
  add(add_get(app, global));
  add(add_list(app, global));
  add(add_check(app));
  add(add_reload(app, global));
  add(add_revoke(app, global));
  add(add_upgrade(app, global));
  add(add_status(app, global));
  add(add_audit(app, global));
  add(add_doctor(app));
  add(add_help(app));
  add(add_version(app, version_line));

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
  } catch (const CLI::ExtrasError& e) {
    // A word CLI11 could not place, and no command chosen: the word was meant
    // as one (its own message would be "argument was not expected").
    if (app.get_subcommands().empty()) {
      for (const std::string& word : app.remaining()) {
        if (!word.starts_with('-')) return unknown_command(app, word);
      }
    }
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  for (auto& [subcommand, command] : commands) {
    if (subcommand->parsed()) return command();
  }
  return missing_command(app);
}
