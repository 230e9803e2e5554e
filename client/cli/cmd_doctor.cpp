// sockbroker doctor: the kernel settings that weaken what the broker protects,
// each with its verdict and the exact lines that fix it; then the kernel
// features the broker and `sockbroker run` use, and what a kernel without one
// gets instead.
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "doctor_checks.hpp"
#include "doctor_features.hpp"
#include "exit_codes.hpp"
#include "table.hpp"

namespace sockbroker::cli {
namespace {

constexpr int kExitBadSetting = 1;

struct DoctorOptions {
  bool json = false;
};

std::string value_text(const Finding& f) { return f.value ? std::to_string(*f.value) : "-"; }

struct Counts {
  std::size_t by_verdict[4] = {};
  void add(Verdict v) { by_verdict[static_cast<int>(v)]++; }
  [[nodiscard]] std::size_t of(Verdict v) const { return by_verdict[static_cast<int>(v)]; }
  [[nodiscard]] nlohmann::json json() const {
    return {{"ok", of(Verdict::ok)}, {"warn", of(Verdict::warn)}, {"bad", of(Verdict::bad)}, {"missing", of(Verdict::missing)}};
  }
};

void print_human(const std::vector<Finding>& findings, const std::vector<FeatureFinding>& features) {
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

  std::vector<TableRow> kernel{{"KERNEL FEATURE", "SINCE", "VERDICT", "WHAT IT GIVES"}};
  for (const auto& f : features) kernel.push_back({f.name, f.since, verdict_name(f.verdict), f.gives});
  std::cout << '\n' << format_table(kernel);
  header = false;
  for (const auto& f : features) {
    if (f.present) continue;
    if (!header) {
      std::cout << '\n';
      header = true;
    }
    std::cout << f.name << ": " << verdict_name(f.verdict) << ": " << f.assessment << '\n';
  }
}

nlohmann::json settings_json(const std::vector<Finding>& findings) {
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
  return settings;
}

nlohmann::json features_json(const std::vector<FeatureFinding>& features) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& f : features) {
    out.push_back({{"name", f.name},
                   {"since", f.since},
                   {"present", f.present},
                   {"verdict", verdict_name(f.verdict)},
                   {"gives", f.gives},
                   {"assessment", f.assessment}});
  }
  return out;
}

int doctor(const DoctorOptions& options) {
  const auto findings = run_checks();
  const auto features = probe_features();
  Counts settings, kernel;
  for (const auto& f : findings) settings.add(f.verdict);
  for (const auto& f : features) kernel.add(f.verdict);
  const bool any_bad = settings.of(Verdict::bad) + kernel.of(Verdict::bad) > 0;
  if (options.json) {
    nlohmann::json out{{"settings", settings_json(findings)},
                       {"summary", settings.json()},
                       {"features", features_json(features)},
                       {"features_summary", kernel.json()},
                       {"bad", any_bad}};
    std::cout << out.dump(2) << '\n';
  } else {
    print_human(findings, features);
    std::cout << '\n'
              << findings.size() << " settings: " << settings.of(Verdict::ok) << " ok, " << settings.of(Verdict::warn)
              << " warn, " << settings.of(Verdict::bad) << " bad, " << settings.of(Verdict::missing) << " missing; "
              << features.size() << " kernel features: " << kernel.of(Verdict::ok) << " present, "
              << features.size() - kernel.of(Verdict::ok) << " absent (" << kernel.of(Verdict::warn) << " warn, "
              << kernel.of(Verdict::bad) << " bad)\n";
  }
  return any_bad ? kExitBadSetting : kExitOk;
}

}  // namespace

Command add_doctor(CLI::App& app) {
  auto options = std::make_shared<DoctorOptions>();
  auto* cmd = app.add_subcommand(
      "doctor",
      "Check the kernel settings that weaken socket security, and the kernel features sockbroker uses.\n"
      "For each setting (tcp_fastopen, tcp_syncookies, ip_nonlocal_bind, somaxconn, ip_unprivileged_port_start,\n"
      "rmem/wmem_max, io_uring_disabled): value, verdict, why, and the exact fix. For each feature (SO_PEERGROUPS,\n"
      "SO_PEERPIDFD, Landlock ABI 2 and 4, seccomp NOTIF_ADDFD, SO_PASSRIGHTS): whether this kernel has it, and\n"
      "what a kernel without it gets instead. Exit 1 if any is bad.");
  cmd->footer(
      "net.* settings are per network namespace: this reads the caller's, so run it where the broker runs.\n"
      "For warn and bad the fix is printed both for now (sysctl -w) and for every boot (a line for\n"
      "/etc/sysctl.d/60-sockbroker.conf, then `sysctl --system`).\n\n"
      "Recommended: net.ipv4.tcp_fastopen server bits off (0x2, 0x200, 0x400), net.ipv4.tcp_syncookies 1,\n"
      "net.ipv4/ipv6.ip_nonlocal_bind 0, net.core.somaxconn >= 4096,\n"
      "net.ipv4.ip_unprivileged_port_start >= 1024 (below it the broker protects nothing),\n"
      "net.core.rmem_max and wmem_max <= 16 MiB, kernel.io_uring_disabled 2 (or 1).\n"
      "Verdicts of settings: ok; warn (weaker than it should be, but with legitimate uses); bad (defeats the\n"
      "broker or leaves listeners open to a SYN flood); missing (this kernel has no such setting).\n"
      "Verdicts of features: ok (present); missing (absent, and what replaces it is as safe); warn (absent,\n"
      "and a protection is weaker); bad (absent, and the broker cannot work). Each feature is asked of the\n"
      "kernel, not read from its version: a container's seccomp profile can hide one (doctor then says so).\n\n"
      "Exit status: 0 when no setting or feature is bad (warnings included), 1 when at least one is, 64 usage.\n\n"
      "Examples:\n"
      "  sockbroker doctor --json | jq -r '.settings[] | select(.fix) | .fix.sysctl_d'\n"
      "  sockbroker doctor --json | jq -r '.features[] | select(.present | not) | .name'");
  cmd->add_flag("--json", options->json,
                "print {\"settings\": [{key, path, per_netns, value, verdict, why, assessment, recommended, "
                "fix: {sysctl, sysctl_d, sysctl_d_file} | null}], \"summary\": {ok, warn, bad, missing}, "
                "\"features\": [{name, since, present, verdict, gives, assessment}], "
                "\"features_summary\": {ok, warn, bad, missing}, \"bad\": bool}");
  return [options] { return doctor(*options); };
}

}  // namespace sockbroker::cli
