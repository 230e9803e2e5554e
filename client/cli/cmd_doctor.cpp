// sockbroker doctor: the kernel settings that weaken what the broker protects,
// each with its verdict and the exact lines that fix it.
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "doctor_checks.hpp"
#include "exit_codes.hpp"
#include "table.hpp"

namespace sockbroker::cli {
namespace {

constexpr int kExitBadSetting = 1;

struct DoctorOptions {
  bool json = false;
};

std::string value_text(const Finding& f) { return f.value ? std::to_string(*f.value) : "-"; }

void print_human(const std::vector<Finding>& findings) {
  std::vector<TableRow> table{{"SETTING", "VALUE", "VERDICT", "WHY IT MATTERS"}};
  for (const auto& f : findings) table.push_back({f.key, value_text(f), verdict_name(f.verdict), f.why});
  std::cout << format_table(table);

  bool header = false;
  for (const auto& f : findings) {
    if (f.verdict == Verdict::ok) continue;
    if (!header) {
      std::cout << '\n';
      header = true;
    }
    std::cout << f.key << ": " << verdict_name(f.verdict) << ": " << f.assessment;
    if (f.per_netns) std::cout << " (this network namespace's value)";
    std::cout << '\n';
    if (!f.recommended) continue;
    std::cout << "  now:          " << sysctl_command(f) << '\n'
              << "  at boot:      echo '" << sysctl_d_line(f) << "' >> " << kSysctlDropIn << '\n';
  }
}

int doctor(const DoctorOptions& options) {
  auto findings = run_checks();
  std::size_t counts[4] = {};
  for (const auto& f : findings) counts[static_cast<int>(f.verdict)]++;
  const bool any_bad = counts[static_cast<int>(Verdict::bad)] > 0;
  if (options.json) {
    nlohmann::json settings = nlohmann::json::array();
    for (const auto& f : findings) {
      nlohmann::json entry{{"key", f.key},
                           {"path", f.path},
                           {"per_netns", f.per_netns},
                           {"value", f.value ? nlohmann::json(*f.value) : nlohmann::json(nullptr)},
                           {"verdict", verdict_name(f.verdict)},
                           {"why", f.why},
                           {"assessment", f.assessment},
                           {"recommended", f.recommended ? nlohmann::json(*f.recommended) : nlohmann::json(nullptr)},
                           {"fix", nullptr}};
      if (f.recommended) {
        entry["fix"] = {{"sysctl", sysctl_command(f)}, {"sysctl_d", sysctl_d_line(f)}, {"sysctl_d_file", kSysctlDropIn}};
      }
      settings.push_back(std::move(entry));
    }
    nlohmann::json out{{"settings", settings},
                       {"summary",
                        {{"ok", counts[0]}, {"warn", counts[1]}, {"bad", counts[2]}, {"missing", counts[3]}}},
                       {"bad", any_bad}};
    std::cout << out.dump(2) << '\n';
  } else {
    print_human(findings);
    std::cout << '\n'
              << findings.size() << " settings: " << counts[0] << " ok, " << counts[1] << " warn, " << counts[2]
              << " bad, " << counts[3] << " missing\n";
  }
  return any_bad ? kExitBadSetting : kExitOk;
}

}  // namespace

Command add_doctor(CLI::App& app) {
  auto options = std::make_shared<DoctorOptions>();
  auto* cmd = app.add_subcommand(
      "doctor",
      "Check the kernel settings that weaken socket security.\n"
      "For each (tcp_fastopen, tcp_syncookies, ip_nonlocal_bind, somaxconn, ip_unprivileged_port_start,\n"
      "rmem/wmem_max, io_uring_disabled): value, verdict, why, and the exact fix. Exit 1 if any is bad.");
  cmd->footer(
      "net.* settings are per network namespace: this reads the caller's, so run it where the broker runs.\n"
      "For warn and bad the fix is printed both for now (sysctl -w) and for every boot (a line for\n"
      "/etc/sysctl.d/60-sockbroker.conf, then `sysctl --system`).\n\n"
      "Recommended: net.ipv4.tcp_fastopen server bits off (0x2, 0x200, 0x400), net.ipv4.tcp_syncookies 1,\n"
      "net.ipv4/ipv6.ip_nonlocal_bind 0, net.core.somaxconn >= 4096,\n"
      "net.ipv4.ip_unprivileged_port_start >= 1024 (below it the broker protects nothing),\n"
      "net.core.rmem_max and wmem_max <= 16 MiB, kernel.io_uring_disabled 2 (or 1).\n"
      "Verdicts: ok; warn (weaker than it should be, but with legitimate uses); bad (defeats the broker or\n"
      "leaves listeners open to a SYN flood); missing (this kernel has no such setting).\n\n"
      "Exit status: 0 when no setting is bad (warnings included), 1 when at least one is bad, 64 usage.\n\n"
      "Example: sockbroker doctor --json | jq -r '.settings[] | select(.fix) | .fix.sysctl_d'");
  cmd->add_flag("--json", options->json,
                "print {\"settings\": [{key, path, per_netns, value, verdict, why, assessment, recommended, "
                "fix: {sysctl, sysctl_d, sysctl_d_file} | null}], \"summary\": {ok, warn, bad, missing}, \"bad\": bool}");
  return [options] { return doctor(*options); };
}

}  // namespace sockbroker::cli
