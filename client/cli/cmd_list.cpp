// sockbroker list: what the caller may acquire (everything, for administrators).
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <sockbroker/client.hpp>

#include "commands.hpp"
#include "exit_codes.hpp"
#include "table.hpp"

namespace sockbroker::cli {
namespace {

struct ListOptions {
  bool json = false;
  bool holders = false;
};

// "pid 1234 (uid 33, nginx.service)": one holding process, as a table cell.
std::string describe_holder(const HolderInfo& h) {
  return "pid " + std::to_string(h.pid) + " (uid " + std::to_string(h.uid) + (h.unit.empty() ? "" : ", " + h.unit) + ")";
}

// holders: with --holders, every holding process named, after its socket's row.
void print_table(const SocketList& list, const std::vector<HolderInfo>* holders) {
  std::vector<TableRow> rows{list.admin_view ? TableRow{"NAME", "TYPE", "ADDRESS", "STATE", "HOLDERS", "GRANTS", "LIMIT", "NOTE"}
                                             : TableRow{"NAME", "TYPE", "ADDRESS"}};
  for (const auto& s : list.sockets) {
    TableRow row{s.name, s.type, s.address};
    if (list.admin_view) {
      std::string note = s.detail.empty() ? (s.reuse_port ? "reuse_port group" : "") : s.detail;
      row.insert(row.end(), {s.state, std::to_string(s.holders), std::to_string(s.grants_total),
                             s.max_grants == 0 ? "-" : std::to_string(s.max_grants), std::move(note)});
    }
    rows.push_back(std::move(row));
    if (holders == nullptr) continue;
    std::size_t named = 0;
    for (const auto& h : *holders) {
      if (h.socket != s.name) continue;
      ++named;
      rows.push_back(TableRow{"", "", "  held by " + describe_holder(h)});
    }
    if (named < s.holders) {
      rows.push_back(TableRow{"", "", "  and " + std::to_string(s.holders - named) + " more (the broker names 8)"});
    }
  }
  std::cout << format_table(rows);
  if (list.sockets.empty()) std::cout << "(no socket is granted to you)\n";
}

int list(const ListOptions& options, const GlobalOptions& global) {
  auto client = Client::connect(global.control);
  if (!client) return report(client.error());
  auto sockets = client->list();
  if (!sockets) return report(sockets.error());
  std::vector<HolderInfo> holders;
  if (options.holders) {
    if (!sockets->admin_view) {
      std::cerr << "sockbroker list --holders: administrators only (root or the policy's admin_group); without it, "
                   "list shows the sockets you may acquire\n";
      return kExitDenied;
    }
    auto got = client->holders();
    if (!got) return report(got.error());
    holders = std::move(*got);
  }
  if (!options.json) {
    print_table(*sockets, options.holders ? &holders : nullptr);
    return kExitOk;
  }
  nlohmann::json out = nlohmann::json::array();
  for (const auto& s : sockets->sockets) {
    nlohmann::json entry{{"name", s.name}, {"type", s.type}, {"address", s.address}};
    if (sockets->admin_view) {
      entry["state"] = s.state;
      entry["holders"] = s.holders;
      entry["grants_total"] = s.grants_total;
      entry["max_grants"] = s.max_grants;
      entry["reuse_port"] = s.reuse_port;
      entry["inodes"] = s.inodes;  // st_ino of the kernel sockets: ss -e shows them as ino:N
      if (!s.detail.empty()) entry["error"] = s.detail;
      if (options.holders) {
        nlohmann::json processes = nlohmann::json::array();
        for (const auto& h : holders) {
          if (h.socket != s.name) continue;
          processes.push_back({{"pid", h.pid}, {"uid", h.uid}, {"unit", h.unit.empty() ? nlohmann::json() : nlohmann::json(h.unit)}});
        }
        entry["holder_processes"] = std::move(processes);  // at most 8; "holders" counts them all
      }
    }
    out.push_back(std::move(entry));
  }
  std::cout << nlohmann::json{{"admin", sockets->admin_view}, {"sockets", out}}.dump(2) << '\n';
  return kExitOk;
}

}  // namespace

Command add_list(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<ListOptions>();
  auto* cmd = app.add_subcommand("list",
                                 "List the sockets you may acquire: name, type, address. Administrators (root or\n"
                                 "admin_group) see every socket with its bind state and grant count.");
  cmd->add_flag("--json", options->json, "print JSON for scripts");
  cmd->add_flag("--holders", options->holders,
                "administrators: name the processes holding each socket (pid, uid, systemd unit; up to 8 a socket)");
  return [options, &global] { return list(*options, global); };
}

}  // namespace sockbroker::cli
