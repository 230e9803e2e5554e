// sockbroker audit: every listening socket of this network namespace, and
// whether the broker, the operator's baseline, or nobody accounts for it.
#include <sys/stat.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include <sockbroker/client.hpp>

#include "audit_baseline.hpp"
#include "commands.hpp"
#include "exit_codes.hpp"
#include "sock_diag.hpp"
#include "table.hpp"

namespace sockbroker::cli {
namespace {

constexpr int kExitUnexpected = 1;
constexpr int kExitNoInput = 66;  // EX_NOINPUT: the baseline file cannot be read

struct AuditOptions {
  bool json = false;
  std::string baseline;
  bool write_baseline = false;
};

// What the broker told us about itself; everything empty when it is unreachable.
struct BrokerView {
  bool reachable = false;
  bool admin = false;
  std::string control;
  std::string problem;  // why nothing will be marked "broker", for the warning
  std::set<std::uint64_t> inodes;
  std::set<pid_t> pids;
};

enum class Status { broker, expected, unexpected };

struct Row {
  const Listener* listener = nullptr;
  std::vector<Owner> owners;
  Status status = Status::unexpected;
  const BaselineEntry* baseline_entry = nullptr;
};

const char* status_name(Status s) {
  switch (s) {
    case Status::broker: return "broker";
    case Status::expected: return "expected";
    case Status::unexpected: return "unexpected";
  }
  return "unexpected";
}

BrokerView ask_broker(const GlobalOptions& global) {
  BrokerView view;
  view.control = resolve_control_path(global.control);
  auto client = Client::connect(global.control);
  if (!client) {
    view.problem = client.error().message;
    return view;
  }
  auto listing = client->list();
  if (!listing) {
    view.problem = listing.error().message;
    return view;
  }
  view.reachable = true;
  view.admin = listing->admin_view;
  if (!view.admin) {
    view.problem = "the broker shows its sockets only to administrators (root or its admin_group)";
    return view;
  }
  for (const auto& s : listing->sockets) view.inodes.insert(s.inodes.begin(), s.inodes.end());
  return view;
}

// The broker's pids: the processes holding its control socket. Under socket
// activation systemd (pid 1) holds it too, and is not the broker.
void find_broker_pids(BrokerView& view, const std::vector<Listener>& listeners, const OwnerScan& owners) {
  struct stat st{};
  if (!view.reachable || ::stat(view.control.c_str(), &st) != 0) return;
  for (const auto& l : listeners) {
    if (l.family != AF_UNIX || !l.has_vfs || l.vfs_inode != st.st_ino || l.vfs_dev != st.st_dev) continue;
    auto it = owners.by_inode.find(l.inode);
    if (it == owners.by_inode.end()) continue;
    for (const auto& owner : it->second) {
      if (owner.pid != 1 || it->second.size() == 1) view.pids.insert(owner.pid);
    }
  }
}

int proto_rank(const Listener& l) { return l.proto == "tcp" ? 0 : l.proto == "udp" ? 1 : 2; }

bool row_before(const Row& a, const Row& b) {
  const Listener& x = *a.listener;
  const Listener& y = *b.listener;
  if (x.family == AF_UNIX || y.family == AF_UNIX) {
    return std::tie(x.proto, x.address, x.inode) < std::tie(y.proto, y.address, y.inode);
  }
  return std::make_tuple(proto_rank(x), x.family, x.addr_bytes, x.host, x.port, x.inode) <
         std::make_tuple(proto_rank(y), y.family, y.addr_bytes, y.host, y.port, y.inode);
}

std::string processes_text(const std::vector<Owner>& owners) {
  if (owners.empty()) return "-";
  std::string out;
  for (const auto& o : owners) {
    if (!out.empty()) out += ',';
    out += std::to_string(o.pid) + "/" + o.comm;
  }
  return out;
}

std::vector<std::string> marks_of(const Row& row) {
  std::vector<std::string> marks{status_name(row.status)};
  if (row.listener->wildcard) marks.emplace_back("wildcard");
  return marks;
}

std::string join(const std::vector<std::string>& items, const char* separator) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

void print_table(const std::vector<Row>& rows) {
  std::vector<TableRow> table{{"PROTO", "ADDRESS", "PROCESS", "MARKS"}};
  for (const auto& row : rows) {
    table.push_back({row.listener->proto, row.listener->address, processes_text(row.owners), join(marks_of(row), ",")});
  }
  std::cout << format_table(table);
}

nlohmann::json to_json(const std::vector<Row>& rows, const BrokerView& broker) {
  nlohmann::json listeners = nlohmann::json::array();
  for (const auto& row : rows) {
    const Listener& l = *row.listener;
    nlohmann::json processes = nlohmann::json::array();
    for (const auto& o : row.owners) processes.push_back({{"pid", o.pid}, {"comm", o.comm}});
    nlohmann::json entry{{"proto", l.proto},
                         {"type", l.type},
                         {"family", l.family == AF_INET ? "AF_INET" : l.family == AF_INET6 ? "AF_INET6" : "AF_UNIX"},
                         {"address", l.address},
                         {"inode", l.inode},
                         {"processes", processes},
                         {"marks", marks_of(row)},
                         {"status", status_name(row.status)},
                         {"broker", row.status == Status::broker},
                         {"expected", row.status == Status::expected},
                         {"unexpected", row.status == Status::unexpected},
                         {"wildcard", l.wildcard}};
    if (l.family != AF_UNIX) {
      entry["host"] = l.host;
      entry["port"] = l.port;
    }
    if (row.baseline_entry != nullptr) {
      const auto& where = row.baseline_entry->where;
      entry["baseline"] = where.file + ":" + std::to_string(where.line);
    }
    listeners.push_back(std::move(entry));
  }
  nlohmann::json broker_json{{"control", broker.control},
                             {"reachable", broker.reachable},
                             {"admin", broker.admin},
                             {"pids", broker.pids},
                             {"inodes", broker.inodes.size()}};
  if (!broker.problem.empty()) broker_json["problem"] = broker.problem;
  return {{"listeners", listeners}, {"broker", broker_json}};
}

int write_baseline(const std::vector<Row>& rows) {
  std::cout << "# sockbroker audit baseline: one accepted listener per line, PROTO ADDRESS [PROCESS].\n"
               "# Written by `sockbroker audit --write-baseline` from the listeners of this moment;\n"
               "# review it, then use it with `sockbroker audit --baseline FILE`. A port or process\n"
               "# may be *; a line without a process accepts any.\n";
  std::set<std::string> seen;  // the members of a reuse_port group are one line
  for (const auto& row : rows) {
    std::string line = baseline_line(*row.listener, row.owners);
    if (!seen.insert(line).second) continue;
    const std::string& address = row.listener->address;
    if (row.listener->family == AF_UNIX && address[0] != '/' && address[0] != '@') {
      std::cout << "# not expressible (relative or no name): " << line << '\n';
      continue;
    }
    std::cout << line << '\n';
  }
  return kExitOk;
}

int audit(const AuditOptions& options, const GlobalOptions& global) {
  std::optional<Baseline> baseline;
  if (!options.baseline.empty()) {
    auto load = load_baseline(options.baseline);
    if (load.read_errno != 0) {
      std::cerr << "sockbroker: cannot read baseline " << options.baseline << ": " << std::strerror(load.read_errno)
                << '\n';
      return kExitNoInput;
    }
    for (const auto& d : load.diagnostics) std::cerr << d.format() << '\n';
    if (!load.baseline) {
      std::cerr << "sockbroker: baseline invalid: " << load.diagnostics.size() << " error(s)\n";
      return kExitConfig;
    }
    baseline = std::move(load.baseline);
  }

  auto listeners = dump_listeners();
  if (!listeners) {
    std::cerr << "sockbroker: cannot list the sockets of this network namespace: " << listeners.error().message
              << ": " << std::strerror(listeners.error().sys_errno) << '\n';
    return kExitBind;
  }
  std::vector<std::uint64_t> inodes;
  for (const auto& l : *listeners) inodes.push_back(l.inode);
  auto owners = find_owners(inodes);
  if (!owners) {
    std::cerr << "sockbroker: cannot find the processes holding sockets: " << owners.error().message << ": "
              << std::strerror(owners.error().sys_errno) << '\n';
    return kExitBind;
  }
  if (owners->unreadable > 0) {
    std::cerr << "sockbroker: warning: the descriptors of " << owners->unreadable
              << " process(es) are not readable by this user; run as root to see every owner\n";
  }

  std::vector<Row> rows;
  for (const auto& l : *listeners) {
    Row row;
    row.listener = &l;
    if (auto it = owners->by_inode.find(l.inode); it != owners->by_inode.end()) row.owners = it->second;
    rows.push_back(std::move(row));
  }
  std::sort(rows.begin(), rows.end(), row_before);
  if (options.write_baseline) return write_baseline(rows);

  BrokerView broker = ask_broker(global);
  find_broker_pids(broker, *listeners, *owners);
  if (!broker.problem.empty()) {
    std::cerr << "sockbroker: warning: no listener is marked broker: " << broker.problem << '\n';
  }

  std::size_t counts[3] = {}, wildcards = 0;
  for (auto& row : rows) {
    bool held_by_broker = std::any_of(row.owners.begin(), row.owners.end(),
                                      [&](const Owner& o) { return broker.pids.count(o.pid) != 0; });
    if (broker.inodes.count(row.listener->inode) != 0 || held_by_broker) {
      row.status = Status::broker;
    } else if (baseline && (row.baseline_entry = match_baseline(*baseline, *row.listener, row.owners)) != nullptr) {
      row.status = Status::expected;
    }
    counts[static_cast<int>(row.status)]++;
    if (row.listener->wildcard) ++wildcards;
  }

  if (options.json) {
    auto out = to_json(rows, broker);
    out["summary"] = {{"listeners", rows.size()},
                      {"broker", counts[0]},
                      {"expected", counts[1]},
                      {"unexpected", counts[2]},
                      {"wildcard", wildcards}};
    std::cout << out.dump(2) << '\n';
  } else {
    print_table(rows);
    std::cout << rows.size() << " listener" << (rows.size() == 1 ? "" : "s") << ": " << counts[0] << " broker, "
              << counts[1] << " expected, " << counts[2] << " unexpected (" << wildcards << " wildcard)\n";
  }
  return counts[2] > 0 ? kExitUnexpected : kExitOk;
}

}  // namespace

Command add_audit(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<AuditOptions>();
  auto* cmd = app.add_subcommand(
      "audit",
      "List every listening socket of this network namespace, and who accounts for it.\n"
      "TCP, bound UDP, Unix stream and seqpacket (path and abstract '@' names), with the processes\n"
      "holding each, marked broker, expected (--baseline) or unexpected, and wildcard. Exit 1 if any is\n"
      "unexpected.");
  cmd->footer(
      "Marks, read from the kernel (sock_diag, /proc/*/fd):\n"
      "  broker      the broker holds it or granted it (needs the administrator's view: root or admin_group)\n"
      "  expected    a line of the --baseline file accepts it\n"
      "  unexpected  neither: a service nobody accounted for\n"
      "  wildcard    (in addition) it listens on every address: 0.0.0.0 or [::]\n"
      "Run as root to see the owners of every socket. If the broker cannot be reached, a warning says so\n"
      "and nothing is marked broker.\n\n"
      "Baseline file: one listener per line, PROTO ADDRESS [PROCESS], '#' starts a comment:\n"
      "  tcp  0.0.0.0:22   sshd          (PROTO is tcp, udp or unix)\n"
      "  udp  [::]:*       chronyd       (the port may be *)\n"
      "  unix /run/dbus/system_bus_socket *   (the process may be * or left out)\n"
      "  unix @/tmp/.X11-unix/X0\n"
      "PROCESS is the process name (comm, as in the PROCESS column). Bytes outside printable ASCII\n"
      "are written \\xHH, as the listing shows them.\n\n"
      "Exit status: 0 no unexpected listener, 1 at least one, 64 usage, 66 the baseline cannot be\n"
      "read, 78 the baseline is invalid (each mistake printed as FILE:LINE:COL: error: ...),\n"
      "71 the kernel's socket tables cannot be read.\n\n"
      "Examples:\n"
      "  sockbroker audit --write-baseline > /etc/sockbroker/audit.baseline   start from today's state\n"
      "  sockbroker audit --baseline /etc/sockbroker/audit.baseline || alert  from cron or a timer");
  auto* json = cmd->add_flag("--json", options->json,
                "print {\"listeners\": [{proto, type, family, address, host, port, inode, processes: [{pid, comm}], "
                "marks, status, broker, expected, unexpected, wildcard, baseline}], \"broker\": {...}, "
                "\"summary\": {...}}");
  auto* baseline = cmd->add_option("--baseline", options->baseline, "the accepted listeners (format above)");
  auto* write = cmd->add_flag("--write-baseline", options->write_baseline,
                              "print today's listeners as a baseline file and exit 0");
  write->excludes(baseline);
  write->excludes(json);
  return [options, &global] { return audit(*options, global); };
}

}  // namespace sockbroker::cli
