// sockbroker status: the broker's counters for an administrator, as aligned
// "key: value" lines (like `systemctl status`), JSON, or Prometheus text.
#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <sockbroker/client.hpp>

#include "commands.hpp"
#include "exit_codes.hpp"
#include "table.hpp"

namespace sockbroker::cli {
namespace {

struct StatusOptions {
  bool json = false;
  bool prometheus = false;
};

// "2026-11-22 13:09:58 UTC", in the local zone as systemctl prints it.
std::string local_time(std::int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  if (::localtime_r(&t, &tm) == nullptr) return std::to_string(unix_seconds);
  char text[64];
  if (std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S %Z", &tm) == 0) return std::to_string(unix_seconds);
  return text;
}

// "3d 4h 5min 6s", largest unit first, zero units left out, as systemd does.
std::string duration(std::uint64_t seconds) {
  static constexpr std::pair<std::uint64_t, const char*> kUnits[] = {
      {86400, "d"}, {3600, "h"}, {60, "min"}, {1, "s"}};
  std::string out;
  for (const auto& [size, unit] : kUnits) {
    if (seconds >= size) {
      out += (out.empty() ? "" : " ") + std::to_string(seconds / size) + unit;
      seconds %= size;
    }
  }
  return out.empty() ? "0s" : out;
}

std::uint64_t denials_total(const BrokerStatus& s) {
  std::uint64_t total = 0;
  for (const auto& [reason, count] : s.denials) total += count;
  return total;
}

// Where a failing trail's lines wait besides the broker's memory, as
// " (...)".
std::string where_audit_lines_are_kept(const BrokerStatus& s) {
  if (!s.audit_kept_in_file.empty() && s.audit_kept_in_store) {
    return " (copies in systemd's store and in " + s.audit_kept_in_file + ": the next broker writes them)";
  }
  if (!s.audit_kept_in_file.empty()) return " (a copy in " + s.audit_kept_in_file + ": the next broker writes them)";
  if (s.audit_kept_in_store) return " (a copy in systemd's store: a restart writes them)";
  return " (in memory only)";
}

// "ok (audit_failure = deny); 0 lines lost, 0 suppressed by the rate limit",
// or since when and why it fails, and what grants do meanwhile.
std::string audit_summary(const BrokerStatus& s) {
  if (s.audit_failure.empty()) return "not reported by this broker";
  std::string state;
  if (s.audit_failing) {
    state = "FAILING since " + local_time(s.audit_failing_since) + ": " + s.audit_error + "; " +
            (s.audit_failure == "deny" ? "grants are refused" : "grants go on") + " (audit_failure = " +
            s.audit_failure + "); " + std::to_string(s.audit_lines_waiting) + " line(s) waiting" +
            where_audit_lines_are_kept(s);
  } else {
    state = "ok (audit_failure = " + s.audit_failure + ")";
  }
  return state + "; " + std::to_string(s.audit_lines_lost) + " line(s) lost, " + std::to_string(s.audit_suppressed) +
         " suppressed by the rate limit";
}

void print_human(const BrokerStatus& s, const std::string& control) {
  std::vector<std::pair<std::string, std::string>> lines;
  lines.emplace_back("Control", control);
  lines.emplace_back("Main PID", std::to_string(s.pid));
  lines.emplace_back("Active", "since " + local_time(s.start_time) + "; " + duration(s.uptime_seconds) + " ago");
  lines.emplace_back("Policy", "generation " + std::to_string(s.policy_generation) + ", " +
                                   std::to_string(s.policy_paths.size()) + " file(s)");
  for (const auto& path : s.policy_paths) lines.emplace_back("", path);
  lines.emplace_back("Sockets", std::to_string(s.sockets_bound) + " bound, " + std::to_string(s.sockets_failed) +
                                    " failed");
  lines.emplace_back("Grants", std::to_string(s.grants_total));
  lines.emplace_back("Denials", std::to_string(denials_total(s)));
  lines.emplace_back("Bad requests", std::to_string(s.bad_requests));
  lines.emplace_back("Clients", std::to_string(s.clients) + " now (this one included), " +
                                    std::to_string(s.peak_clients) + " at most");
  lines.emplace_back("Descriptors", std::to_string(s.fds));
  std::string reloads = std::to_string(s.reloads_ok) + " ok, " + std::to_string(s.reloads_failed) + " failed";
  if (s.last_reload_time != 0) {
    reloads += "; last " + local_time(s.last_reload_time) + " (" + (s.last_reload_ok ? "ok" : "failed") + ")";
  }
  lines.emplace_back("Reloads", reloads);
  if (s.upgrades != 0) {
    lines.emplace_back("Upgrades", std::to_string(s.upgrades) + " in place; last " + local_time(s.last_upgrade_time));
  }
  if (s.last_reload_time != 0 && !s.last_reload_message.empty()) lines.emplace_back("", s.last_reload_message);
  lines.emplace_back("Audit", audit_summary(s));

  std::size_t width = 0;
  for (const auto& [key, value] : lines) width = std::max(width, key.size());
  std::cout << "sockbrokerd " << s.version << '\n';
  for (const auto& [key, value] : lines) {
    std::cout << fmt::format("{:>{}} {}\n", key.empty() ? "" : key + ":", width + 4, value);
  }

  std::cout << '\n';
  std::vector<TableRow> table{{"SOCKET", "STATE", "HOLDERS", "GRANTS", "NOTE"}};
  for (const auto& socket : s.sockets) {
    table.push_back({socket.name, socket.state, std::to_string(socket.holders), std::to_string(socket.grants_total),
                     socket.detail});
  }
  std::cout << format_table(table);
  if (s.sockets.empty()) std::cout << "(the policy names no socket)\n";

  std::cout << "\nDenials by reason:\n";
  if (s.denials.empty()) std::cout << "  none\n";
  std::vector<TableRow> reasons;
  for (const auto& [reason, count] : s.denials) reasons.push_back({reason, std::to_string(count)});
  std::cout << format_table(reasons, "  ");
}

nlohmann::ordered_json to_json(const BrokerStatus& s) {
  nlohmann::ordered_json denials = nlohmann::ordered_json::object();
  for (const auto& [reason, count] : s.denials) denials[reason] = count;
  nlohmann::ordered_json sockets = nlohmann::ordered_json::array();
  for (const auto& socket : s.sockets) {
    nlohmann::ordered_json entry{{"name", socket.name},
                                 {"type", socket.type},
                                 {"address", socket.address},
                                 {"state", socket.state},
                                 {"holders", socket.holders},
                                 {"grants_total", socket.grants_total},
                                 {"max_grants", socket.max_grants},
                                 {"reuse_port", socket.reuse_port},
                                 {"inodes", socket.inodes}};
    if (!socket.detail.empty()) entry["error"] = socket.detail;
    sockets.push_back(std::move(entry));
  }
  nlohmann::ordered_json audit = nullptr;
  if (!s.audit_failure.empty()) {
    audit = {{"state", s.audit_failing ? "failing" : "ok"},
             {"audit_failure", s.audit_failure},
             {"error", s.audit_failing ? nlohmann::ordered_json(s.audit_error) : nlohmann::ordered_json(nullptr)},
             {"failing_since", s.audit_failing ? nlohmann::ordered_json(s.audit_failing_since) : nlohmann::ordered_json(nullptr)},
             {"lines_lost", s.audit_lines_lost},
             {"suppressed", s.audit_suppressed},
             {"lines_waiting", s.audit_lines_waiting},
             {"kept_in_store", s.audit_kept_in_store},
             {"kept_in_file", s.audit_kept_in_file.empty() ? nlohmann::ordered_json(nullptr)
                                                            : nlohmann::ordered_json(s.audit_kept_in_file)}};
  }
  nlohmann::ordered_json last_reload = nullptr;
  if (s.last_reload_time != 0) {
    last_reload = {{"time", s.last_reload_time}, {"ok", s.last_reload_ok}, {"message", s.last_reload_message}};
  }
  return {{"version", s.version},
          {"pid", s.pid},
          {"start_time", s.start_time},
          {"uptime_seconds", s.uptime_seconds},
          {"policy_generation", s.policy_generation},
          {"policy_paths", s.policy_paths},
          {"sockets_bound", s.sockets_bound},
          {"sockets_failed", s.sockets_failed},
          {"grants_total", s.grants_total},
          {"denials_total", denials_total(s)},
          {"denials", std::move(denials)},
          {"bad_requests", s.bad_requests},
          {"clients", s.clients},
          {"peak_clients", s.peak_clients},
          {"fds", s.fds},
          {"reloads_ok", s.reloads_ok},
          {"reloads_failed", s.reloads_failed},
          {"last_reload", std::move(last_reload)},
          {"upgrades", s.upgrades},
          {"last_upgrade_time", s.last_upgrade_time},
          {"audit", std::move(audit)},
          {"sockets", std::move(sockets)}};
}

// A label value in the text exposition format: backslash, double quote and
// line feed escaped, nothing else.
std::string label_value(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// One metric family: HELP and TYPE once, then its samples.
class Exposition {
 public:
  void family(const std::string& name, const char* type, const char* help) {
    out_ << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
    name_ = name;
  }
  template <class T>
  void sample(T value) {
    out_ << name_ << ' ' << value << '\n';
  }
  template <class T>
  void sample(const char* label, std::string_view label_text, T value) {
    out_ << name_ << '{' << label << "=\"" << label_value(label_text) << "\"} " << value << '\n';
  }
  [[nodiscard]] std::string str() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::string name_;
};

// The Prometheus text format (version 0.0.4), for node_exporter's textfile
// collector. Counters keep their _total name in TYPE, as the format's examples do.
std::string to_prometheus(const BrokerStatus& s) {
  Exposition e;
  e.family("sockbroker_up", "gauge", "1 if sockbrokerd answered the status request, else 0.");
  e.sample(1);
  e.family("sockbroker_info", "gauge", "The broker's version, as a label; always 1.");
  e.sample("version", s.version, 1);
  e.family("sockbroker_start_time_seconds", "gauge", "When sockbrokerd started, in seconds since the Unix epoch.");
  e.sample(s.start_time);
  e.family("sockbroker_uptime_seconds", "gauge", "Seconds since sockbrokerd started.");
  e.sample(s.uptime_seconds);
  e.family("sockbroker_policy_generation", "gauge", "The policy in force: 1 at start, +1 per successful reload.");
  e.sample(s.policy_generation);
  e.family("sockbroker_sockets", "gauge", "Sockets of the policy by bind state.");
  e.sample("state", "bound", s.sockets_bound);
  e.sample("state", "failed", s.sockets_failed);
  e.family("sockbroker_grants_total", "counter", "Grants of the socket since it was last bound.");
  for (const auto& socket : s.sockets) e.sample("socket", socket.name, socket.grants_total);
  e.family("sockbroker_holders", "gauge", "Live grants of the socket: held by processes still running.");
  for (const auto& socket : s.sockets) e.sample("socket", socket.name, socket.holders);
  e.family("sockbroker_denials_total", "counter", "Refused requests by reason, as audit deny events name it.");
  for (const auto& [reason, count] : s.denials) e.sample("reason", reason, count);
  e.family("sockbroker_bad_requests_total", "counter", "Control datagrams that did not decode.");
  e.sample(s.bad_requests);
  e.family("sockbroker_clients", "gauge", "Control connections open now, this one included.");
  e.sample(s.clients);
  e.family("sockbroker_clients_peak", "gauge", "Most control connections open at once since start.");
  e.sample(s.peak_clients);
  e.family("sockbroker_fds", "gauge", "File descriptors sockbrokerd holds.");
  e.sample(s.fds);
  e.family("sockbroker_reloads_total", "counter", "Policy reloads (SIGHUP or sockbroker reload) by result.");
  e.sample("result", "ok", s.reloads_ok);
  e.sample("result", "failed", s.reloads_failed);
  if (!s.audit_failure.empty()) {
    e.family("sockbroker_audit_failing", "gauge",
             "1 while the audit trail cannot be written (grants are refused if audit_failure = \"deny\").");
    e.sample(s.audit_failing ? 1 : 0);
    e.family("sockbroker_audit_lines_lost_total", "counter", "Audit lines that never reached the trail.");
    e.sample(s.audit_lines_lost);
    e.family("sockbroker_audit_suppressed_total", "counter",
             "Audit lines (and their log lines) the per-uid rate limit dropped.");
    e.sample(s.audit_suppressed);
    e.family("sockbroker_audit_lines_waiting", "gauge",
             "Audit lines kept in sockbrokerd's memory, not yet written (while the trail fails: its backlog).");
    e.sample(s.audit_lines_waiting);
  }
  return e.str();
}

int status(const StatusOptions& options, const GlobalOptions& global) {
  auto client = Client::connect(global.control);
  Result<BrokerStatus> got = client ? client->status() : Result<BrokerStatus>(client.error());
  if (!got) {
    // A textfile collector should learn that the broker is down, not keep the
    // last file: print sockbroker_up 0 whenever the broker cannot be reached.
    if (options.prometheus && got.error().code == SOCKBROKER_E_UNAVAILABLE) {
      Exposition e;
      e.family("sockbroker_up", "gauge", "1 if sockbrokerd answered the status request, else 0.");
      e.sample(0);
      std::cout << e.str();
    }
    return report(got.error());
  }
  if (options.prometheus) {
    std::cout << to_prometheus(*got);
  } else if (options.json) {
    std::cout << to_json(*got).dump(2) << '\n';
  } else {
    print_human(*got, resolve_control_path(global.control));
  }
  return kExitOk;
}

}  // namespace

Command add_status(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<StatusOptions>();
  auto* cmd = app.add_subcommand(
      "status",
      "Administrators (root or admin_group): what the running broker has done since it started.\n"
      "Uptime, policy generation and files, sockets bound and failed, grants and holders per socket,\n"
      "denials by reason, malformed requests, clients connected, descriptors held, reloads, upgrades,\n"
      "and whether the audit trail is being written (lines lost, lines the per-uid rate limit suppressed).\n\n"
      "Examples:\n"
      "  sockbroker status                       aligned key: value lines, then a table per socket\n"
      "  sockbroker status --json | jq .fds      stable keys for scripts\n"
      "  sockbroker status --prometheus > /var/lib/prometheus/node-exporter/sockbroker.prom.$$ &&\n"
      "    mv /var/lib/prometheus/node-exporter/sockbroker.prom.$$ /var/lib/prometheus/node-exporter/sockbroker.prom\n"
      "                                          for node_exporter's textfile collector (write, then rename)\n\n"
      "Exit status: 0, 69 if the broker is unreachable (--prometheus still prints sockbroker_up 0),\n"
      "77 if you are not an administrator.");
  auto* json = cmd->add_flag("--json", options->json, "print JSON for scripts");
  cmd->add_flag("--prometheus", options->prometheus,
                "print the Prometheus text exposition format (node_exporter textfile collector)")
      ->excludes(json);
  return [options, &global] { return status(*options, global); };
}

}  // namespace sockbroker::cli
