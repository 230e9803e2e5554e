// sockbroker check: validate a policy without a running broker, like nginx -t;
// with --as, also what it gives one caller (caller_decisions.hpp).
#include <algorithm>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "caller_decisions.hpp"
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
  CallerSpec caller;  // caller.as empty: no decisions asked for
  std::vector<std::string> sockets;
};

// Where a diagnostic or a socket stands in the loader's order: file by file
// as loaded, then line and column.
auto position_rank(const policy::Policy& policy, const policy::SourcePos& where) {
  const auto file = std::find(policy.files.begin(), policy.files.end(), where.file) - policy.files.begin();
  return std::tuple(file, where.line, where.column);
}

void sort_by_position(const policy::Policy& policy, std::vector<policy::Diagnostic>& diagnostics) {
  std::stable_sort(diagnostics.begin(), diagnostics.end(), [&](const policy::Diagnostic& a, const policy::Diagnostic& b) {
    return position_rank(policy, a.where) < position_rank(policy, b.where);
  });
}

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
}

// Across a restart the broker keeps every socket it binds in systemd's file
// descriptor store, plus its state, its control socket and, while the audit
// trail fails, the lines not yet written (sockbrokerd(8)). The shipped unit
// allows 4,096 entries; systemd refuses the rest without a word to the
// broker, which would then bind those afresh after a restart. Said at the
// first socket that does not fit.
constexpr std::size_t kShippedFdStoreMax = 4096;
constexpr std::size_t kStoreEntriesBesideSockets = 3;

void warn_beyond_fd_store(const policy::Policy& policy, bool strict, std::vector<policy::Diagnostic>& diagnostics) {
  constexpr std::size_t fit = kShippedFdStoreMax - kStoreEntriesBesideSockets;
  std::vector<const policy::SocketSpec*> kept;  // bound by the broker; request sockets are bound per grant
  for (const policy::SocketSpec& socket : policy.sockets) {
    if (socket.netns != policy::NetnsMode::request) kept.push_back(&socket);
  }
  if (kept.size() <= fit) return;
  std::stable_sort(kept.begin(), kept.end(), [&](const policy::SocketSpec* a, const policy::SocketSpec* b) {
    return position_rank(policy, a->where) < position_rank(policy, b->where);
  });
  const policy::SocketSpec& first = *kept[fit];
  diagnostics.push_back(policy::Diagnostic{
      strict ? policy::Diagnostic::Severity::error : policy::Diagnostic::Severity::warning, first.where,
      "socket " + sockbroker::quoted(first.name) + " and the " + std::to_string(kept.size() - fit - 1) +
          " after it in the policy do not fit in the shipped sockbroker.service's file descriptor store "
          "(FileDescriptorStoreMax=" +
          std::to_string(kShippedFdStoreMax) + " holds " + std::to_string(fit) + " sockets and the broker's own " +
          std::to_string(kStoreEntriesBesideSockets) +
          " entries), so a restart binds them afresh; set FileDescriptorStoreMax=" +
          std::to_string(kept.size() + kStoreEntriesBesideSockets) + " or more in a drop-in"});
}

int check(const CheckOptions& options) {
  std::optional<policy::PeerIdentity> caller;
  if (!options.caller.as.empty()) {
    auto resolved = caller_from(options.caller);
    if (!resolved) {
      std::cerr << "sockbroker check: " << resolved.error().message << '\n';
      return kExitUsage;
    }
    caller = std::move(*resolved);
  }
  auto loaded = policy::load_policy(options.policy_paths, policy::LoadOptions{options.strict});
  if (loaded.policy) {
    warn_root_only(*loaded.policy, options.strict, loaded.diagnostics);
    warn_beyond_fd_store(*loaded.policy, options.strict, loaded.diagnostics);
    sort_by_position(*loaded.policy, loaded.diagnostics);
    if (policy::has_errors(loaded.diagnostics)) loaded.policy.reset();  // --strict
  }
  std::size_t errors = 0, warnings = 0;
  for (const auto& d : loaded.diagnostics) {
    (d.severity == policy::Diagnostic::Severity::error ? errors : warnings)++;
  }
  std::vector<SocketDecision> decisions;
  if (caller && loaded.policy) decisions = decide_for(*loaded.policy, *caller, options.sockets);
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
      if (caller) {
        out["caller"] = caller_json(*caller);
        out["caller"]["admin"] = policy::is_admin(loaded.policy->broker, *caller);
        out["decisions"] = decisions_json(decisions);
      }
    }
    std::cout << out.dump(2) << '\n';
  } else {
    for (const auto& d : loaded.diagnostics) std::cerr << d.format() << '\n';
    if (loaded.policy) {
      std::cout << "policy OK: " << loaded.policy->sockets.size() << " socket(s) from "
                << loaded.policy->files.size() << " file(s)";
      if (warnings > 0) std::cout << ", " << warnings << " warning(s)";
      std::cout << '\n';
      if (caller) {
        std::cout << "\nas " << describe_caller(*caller) << ":\n"
                  << format_decisions(decisions) << '\n'
                  << describe_administrator(loaded.policy->broker, *caller) << '\n';
      }
    } else {
      std::cerr << "policy invalid: " << errors << " error(s)";
      if (warnings > 0) std::cerr << ", " << warnings << " warning(s)";
      std::cerr << '\n';
    }
  }
  if (!loaded.policy) return kExitConfig;
  return caller && !options.sockets.empty() ? decisions_exit_code(decisions) : kExitOk;
}

}  // namespace

Command add_check(CLI::App& app) {
  auto options = std::make_shared<CheckOptions>();
  auto* cmd = app.add_subcommand(
      "check",
      "Validate a policy without a running broker. Each problem is printed as\n"
      "FILE:LINE:COL: error|warning: message. Exit 0 when valid, 78 when not.\n"
      "With --as USER, also show what the policy gives that caller: each socket granted (by which rule)\n"
      "or denied, and for a denial the first condition of each rule the caller does not meet.");
  cmd->footer(
      "--as decides with the broker's own matcher, for the identity given instead of the one the kernel\n"
      "reports: uid; primary gid (the account's, or :GROUP); the groups initgroups(3) gives the account, plus\n"
      "each --group (SupplementaryGroups= of its unit); and the unit, executable and cgroup given. One not\n"
      "given is unknown, and a rule that needs it does not match, as in the broker. Root gets every socket.\n"
      "At run time the broker also refuses what no rule decides: a request from another process than the\n"
      "one that connected, a counted socket (reuse_port, max_grants) for a caller it cannot track, and\n"
      "max_grants reached.\n\n"
      "Exit status: 0 valid (and, with --socket, every socket named granted); 78 invalid policy; with\n"
      "--as and --socket, 77 when one is denied and 65 when one does not exist, as `sockbroker get` would;\n"
      "64 usage (an unknown user or group).\n\n"
      "Examples:\n"
      "  sockbroker check --policy /etc/sockbroker/policy.toml --policy /etc/sockbroker/policy.d\n"
      "  sockbroker check --as www-data --unit nginx.service --executable /usr/sbin/nginx\n"
      "  sockbroker check --as 65534:65534 --socket web --json | jq '.decisions[0].rules'");
  cmd->add_option("--policy", options->policy_paths,
                  "policy file or directory of *.toml (repeatable; default /etc/sockbroker/policy.toml "
                  "then /etc/sockbroker/policy.d/)");
  cmd->add_flag("--strict", options->strict, "treat warnings as errors");
  cmd->add_flag("--json", options->json,
                "print JSON for scripts; with --as, also \"caller\" (with admin: bool) and \"decisions\": [{name, exists, type, address, "
                "decision: grant|no_rule_matched|unknown_socket, rule, rules: [{index, file, line, column, fails_on, why}]}]");
  auto* as = cmd->add_option("--as", options->caller.as,
                             "USER[:GROUP] (names or numbers): show what the policy gives a process running as USER");
  cmd->add_option("--group", options->caller.groups, "with --as: a supplementary group beyond USER's (repeatable)")
      ->needs(as);
  cmd->add_option("--unit", options->caller.unit, "with --as: the caller's systemd unit, e.g. nginx.service")->needs(as);
  cmd->add_option("--executable", options->caller.executable, "with --as: the caller's executable, an absolute path")
      ->needs(as);
  cmd->add_option("--cgroup", options->caller.cgroup, "with --as: the caller's cgroup v2 path, e.g. /system.slice/nginx.service")
      ->needs(as);
  cmd->add_option("--socket", options->sockets, "with --as: only this socket (repeatable; default every socket)")
      ->needs(as);
  return [options] { return check(*options); };
}

}  // namespace sockbroker::cli
