// sockbroker check: validate a policy without a running broker, like nginx -t.
#include <algorithm>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "commands.hpp"
#include "exit_codes.hpp"
#include "loader.hpp"
#include "printable.hpp"

namespace sockbroker::cli {
namespace {

struct CheckOptions {
  std::vector<std::string> policy_paths;
  bool strict = false;
  bool json = false;
};

// A socket without allow rules is root's alone, as documented; in a policy
// that is more often a rule forgotten than a decision. The broker serves it
// as written; check, where an operator asks for advice, says so.
void warn_root_only(const policy::Policy& policy, bool strict, std::vector<policy::Diagnostic>& diagnostics) {
  for (const policy::SocketSpec& socket : policy.sockets) {
    if (!socket.allow.empty()) continue;
    // A bare key cannot hold the "." a socket name may have.
    const std::string key = socket.name.find('.') == std::string::npos ? socket.name : sockbroker::quoted(socket.name);
    diagnostics.push_back(policy::Diagnostic{
        strict ? policy::Diagnostic::Severity::error : policy::Diagnostic::Severity::warning, socket.where,
        "socket " + sockbroker::quoted(socket.name) + " has no allow rule, so only root gets it; add [[socket." + key +
            ".allow]] rules, or one with user = \"root\" to say that is meant"});
  }
  // In the loader's order: file by file as loaded, then line and column.
  auto rank = [&](const policy::Diagnostic& d) {
    const auto file = std::find(policy.files.begin(), policy.files.end(), d.where.file) - policy.files.begin();
    return std::tuple(file, d.where.line, d.where.column);
  };
  std::stable_sort(diagnostics.begin(), diagnostics.end(),
                   [&](const policy::Diagnostic& a, const policy::Diagnostic& b) { return rank(a) < rank(b); });
}

int check(const CheckOptions& options) {
  auto loaded = policy::load_policy(options.policy_paths, policy::LoadOptions{options.strict});
  if (loaded.policy) {
    warn_root_only(*loaded.policy, options.strict, loaded.diagnostics);
    if (policy::has_errors(loaded.diagnostics)) loaded.policy.reset();  // --strict
  }
  std::size_t errors = 0, warnings = 0;
  for (const auto& d : loaded.diagnostics) {
    (d.severity == policy::Diagnostic::Severity::error ? errors : warnings)++;
  }
  if (options.json) {
    nlohmann::json diagnostics = nlohmann::json::array();
    for (const auto& d : loaded.diagnostics) {
      diagnostics.push_back({{"file", d.where.file},
                             {"line", d.where.line},
                             {"column", d.where.column},
                             {"severity", d.severity == policy::Diagnostic::Severity::error ? "error" : "warning"},
                             {"message", d.message}});
    }
    nlohmann::json out{{"valid", loaded.policy.has_value()}, {"diagnostics", diagnostics}};
    if (loaded.policy) {
      out["files"] = loaded.policy->files;
      out["sockets"] = loaded.policy->sockets.size();
    }
    std::cout << out.dump(2) << '\n';
  } else {
    for (const auto& d : loaded.diagnostics) std::cerr << d.format() << '\n';
    if (loaded.policy) {
      std::cout << "policy OK: " << loaded.policy->sockets.size() << " socket(s) from "
                << loaded.policy->files.size() << " file(s)";
      if (warnings > 0) std::cout << ", " << warnings << " warning(s)";
      std::cout << '\n';
    } else {
      std::cerr << "policy invalid: " << errors << " error(s)";
      if (warnings > 0) std::cerr << ", " << warnings << " warning(s)";
      std::cerr << '\n';
    }
  }
  return loaded.policy ? kExitOk : kExitConfig;
}

}  // namespace

Command add_check(CLI::App& app) {
  auto options = std::make_shared<CheckOptions>();
  auto* cmd = app.add_subcommand(
      "check",
      "Validate a policy without a running broker. Each problem is printed as\n"
      "FILE:LINE:COL: error|warning: message. Exit 0 when valid, 78 when not.\n\n"
      "Example: sockbroker check --policy /etc/sockbroker/policy.toml --policy /etc/sockbroker/policy.d");
  cmd->add_option("--policy", options->policy_paths,
                  "policy file or directory of *.toml (repeatable; default /etc/sockbroker/policy.toml "
                  "then /etc/sockbroker/policy.d/)");
  cmd->add_flag("--strict", options->strict, "treat warnings as errors");
  cmd->add_flag("--json", options->json, "print JSON for scripts");
  return [options] { return check(*options); };
}

}  // namespace sockbroker::cli
