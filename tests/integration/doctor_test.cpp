// `sockbroker doctor` reading real /proc/sys values: only per-network-namespace
// settings are changed, inside the test's private namespace, so the host's
// own settings are never touched.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "kernel_features.hpp"

namespace {

void set_sysctl(const std::string& key, const std::string& value) {
  std::string path = "/proc/sys/" + key;
  for (auto& c : path) c = c == '.' ? '/' : c;
  std::ofstream out(path);
  out << value << '\n';
  out.close();
  ASSERT_TRUE(out) << "cannot write " << value << " to " << path;
}

struct Doctor {
  int exit_code = -1;
  std::string output;
  std::map<std::string, nlohmann::json> settings;  // by key
  std::map<std::string, nlohmann::json> features;  // by name
  nlohmann::json json;
};

// As uid 65534: everything doctor reads is world-readable, and every feature
// it probes can be probed without privilege. With `older_kernel` (names for
// `integration_tests --as-older-kernel`), on a kernel without those features.
Doctor run_doctor(const std::string& older_kernel = "", const std::vector<std::string>& options = {"--json"}) {
  std::vector<std::string> argv;
  if (!older_kernel.empty()) argv = {sbtest::programs().self, "--as-older-kernel", older_kernel};
  argv.push_back(sbtest::programs().sockbroker);
  argv.push_back("doctor");
  argv.insert(argv.end(), options.begin(), options.end());
  auto result = sbtest::run_command_as(sbtest::kNobody, sbtest::kNogroup, argv);
  Doctor doctor{result.exit_code, result.output, {}, {}, nlohmann::json::parse(result.output, nullptr, false)};
  if (doctor.json.is_object()) {
    for (const auto& s : doctor.json["settings"]) doctor.settings[s["key"].get<std::string>()] = s;
    for (const auto& f : doctor.json["features"]) doctor.features[f["name"].get<std::string>()] = f;
  }
  return doctor;
}

const char* const kFeatures[] = {"SO_PEERGROUPS",     "SO_PEERPIDFD",        "Landlock ABI >= 2",
                                 "Landlock ABI >= 4", "seccomp NOTIF_ADDFD", "SO_PASSRIGHTS"};

void set_good_values() {
  set_sysctl("net.ipv4.tcp_fastopen", "1");
  set_sysctl("net.ipv4.tcp_syncookies", "1");
  set_sysctl("net.ipv4.ip_nonlocal_bind", "0");
  set_sysctl("net.ipv6.ip_nonlocal_bind", "0");
  set_sysctl("net.core.somaxconn", "4096");
  set_sysctl("net.ipv4.ip_unprivileged_port_start", "1024");
}

const char* const kNetnsKeys[] = {"net.ipv4.tcp_fastopen",     "net.ipv4.tcp_syncookies", "net.ipv4.ip_nonlocal_bind",
                                  "net.ipv6.ip_nonlocal_bind", "net.core.somaxconn",      "net.ipv4.ip_unprivileged_port_start"};

TEST(Doctor, GoodPerNetnsValuesAreOkAndExitZero) {
  SBTEST_PREPARE();
  ASSERT_NO_FATAL_FAILURE(set_good_values());
  auto doctor = run_doctor();
  // The host-wide settings (buffers, io_uring) are at worst "warn": exit 0.
  EXPECT_EQ(doctor.exit_code, 0) << doctor.output;
  ASSERT_TRUE(doctor.json.is_object()) << doctor.output;
  EXPECT_EQ(doctor.json["bad"], false);
  EXPECT_EQ(doctor.settings.size(), 9u) << doctor.output;
  for (const char* key : kNetnsKeys) {
    ASSERT_EQ(doctor.settings.count(key), 1u) << key;
    const auto& s = doctor.settings[key];
    EXPECT_EQ(s["verdict"], "ok") << s.dump();
    EXPECT_EQ(s["per_netns"], true) << s.dump();
    EXPECT_TRUE(s["fix"].is_null()) << s.dump();
    EXPECT_FALSE(s["why"].get<std::string>().empty()) << s.dump();
  }
  EXPECT_EQ(doctor.settings["net.core.somaxconn"]["value"], 4096);
  EXPECT_EQ(doctor.settings["net.core.rmem_max"]["per_netns"], false);
}

TEST(Doctor, BadValuesGetVerdictsFixLinesAndExitOne) {
  SBTEST_PREPARE();
  ASSERT_NO_FATAL_FAILURE(set_good_values());
  ASSERT_NO_FATAL_FAILURE(set_sysctl("net.ipv4.ip_unprivileged_port_start", "0"));
  ASSERT_NO_FATAL_FAILURE(set_sysctl("net.ipv4.tcp_fastopen", "1539"));  // 0x603: client, server, no cookie, everyone
  ASSERT_NO_FATAL_FAILURE(set_sysctl("net.ipv4.tcp_syncookies", "0"));
  ASSERT_NO_FATAL_FAILURE(set_sysctl("net.ipv4.ip_nonlocal_bind", "1"));
  ASSERT_NO_FATAL_FAILURE(set_sysctl("net.core.somaxconn", "128"));
  auto doctor = run_doctor();
  EXPECT_EQ(doctor.exit_code, 1) << doctor.output;
  ASSERT_TRUE(doctor.json.is_object()) << doctor.output;
  EXPECT_EQ(doctor.json["bad"], true);

  struct Expect {
    const char* key;
    int value;
    const char* verdict;
    int recommended;
  } expectations[] = {
      {"net.ipv4.ip_unprivileged_port_start", 0, "bad", 1024},
      {"net.ipv4.tcp_fastopen", 1539, "bad", 1},  // the client bit stays
      {"net.ipv4.tcp_syncookies", 0, "bad", 1},
      {"net.ipv4.ip_nonlocal_bind", 1, "warn", 0},
      {"net.core.somaxconn", 128, "warn", 4096},
  };
  for (const auto& e : expectations) {
    const auto& s = doctor.settings[e.key];
    EXPECT_EQ(s["value"], e.value) << s.dump();
    EXPECT_EQ(s["verdict"], e.verdict) << s.dump();
    EXPECT_EQ(s["recommended"], e.recommended) << s.dump();
    EXPECT_EQ(s["fix"]["sysctl"], std::string("sysctl -w ") + e.key + "=" + std::to_string(e.recommended)) << s.dump();
    EXPECT_EQ(s["fix"]["sysctl_d"], std::string(e.key) + " = " + std::to_string(e.recommended)) << s.dump();
    EXPECT_EQ(s["fix"]["sysctl_d_file"], "/etc/sysctl.d/60-sockbroker.conf") << s.dump();
  }
  EXPECT_EQ(doctor.settings["net.ipv6.ip_nonlocal_bind"]["verdict"], "ok");
  EXPECT_GE(doctor.json["summary"]["bad"], 3);

  // The same, for people: the fixes are printed ready to paste.
  auto human = sbtest::run_command_as(0, 0, {sbtest::programs().sockbroker, "doctor"});
  EXPECT_EQ(human.exit_code, 1) << human.output;
  EXPECT_EQ(human.output.rfind("SETTING", 0), 0u) << human.output;
  EXPECT_NE(human.output.find("  now:          sysctl -w net.ipv4.ip_unprivileged_port_start=1024\n"), std::string::npos)
      << human.output;
  EXPECT_NE(human.output.find("echo 'net.ipv4.tcp_syncookies = 1' >> /etc/sysctl.d/60-sockbroker.conf"),
            std::string::npos)
      << human.output;
}

TEST(Doctor, ServerFastOpenAloneIsAWarningNotAFailure) {
  SBTEST_PREPARE();
  ASSERT_NO_FATAL_FAILURE(set_good_values());
  ASSERT_NO_FATAL_FAILURE(set_sysctl("net.ipv4.tcp_fastopen", "3"));
  ASSERT_NO_FATAL_FAILURE(set_sysctl("net.ipv4.ip_unprivileged_port_start", "2048"));  // stricter than the default: fine
  auto doctor = run_doctor();
  EXPECT_EQ(doctor.exit_code, 0) << doctor.output;
  EXPECT_EQ(doctor.settings["net.ipv4.tcp_fastopen"]["verdict"], "warn") << doctor.output;
  EXPECT_EQ(doctor.settings["net.ipv4.tcp_fastopen"]["recommended"], 1) << doctor.output;
  EXPECT_EQ(doctor.settings["net.ipv4.ip_unprivileged_port_start"]["verdict"], "ok") << doctor.output;
}

// Each feature as the kernel answers the test's own probe of it.
TEST(Doctor, KernelFeaturesAreWhatTheKernelAnswers) {
  SBTEST_PREPARE();
  ASSERT_NO_FATAL_FAILURE(set_good_values());
  auto doctor = run_doctor();
  ASSERT_TRUE(doctor.json.is_object()) << doctor.output;
  ASSERT_EQ(doctor.features.size(), std::size(kFeatures)) << doctor.output;
  for (const char* name : kFeatures) {
    ASSERT_EQ(doctor.features.count(name), 1u) << name << "\n" << doctor.output;
    const auto& f = doctor.features[name];
    EXPECT_EQ(f["since"].get<std::string>().rfind("Linux ", 0), 0u) << f.dump();
    EXPECT_FALSE(f["gives"].get<std::string>().empty()) << f.dump();
    EXPECT_EQ(f["verdict"] == "ok", f["present"] == true) << f.dump();
    if (f["present"] == true) {
      EXPECT_EQ(f["assessment"], "present") << f.dump();
    }
  }
  EXPECT_EQ(doctor.features["SO_PEERGROUPS"]["present"], true);  // every kernel the broker runs on
  EXPECT_EQ(doctor.features["SO_PEERPIDFD"]["present"], sbtest::kernel_has_peer_pidfd());
  EXPECT_EQ(doctor.features["Landlock ABI >= 2"]["present"], sbtest::kernel_landlock_abi() >= 2);
  EXPECT_EQ(doctor.features["Landlock ABI >= 4"]["present"], sbtest::kernel_landlock_abi() >= 4);
  // `sockbroker run`'s supervised binds, tested against this kernel, need it.
  EXPECT_EQ(doctor.features["seccomp NOTIF_ADDFD"]["present"], true);
  const std::size_t present = std::count_if(doctor.features.begin(), doctor.features.end(),
                                            [](const auto& entry) { return entry.second["present"] == true; });
  EXPECT_EQ(doctor.json["features_summary"]["ok"], present);
}

// Debian 12's 6.1 as far as doctor can tell: no SO_PEERPIDFD, no SO_PASSRIGHTS,
// Landlock off at boot (as an older kernel built without it answers). The
// broker works there, more weakly: warnings, exit 0.
TEST(Doctor, AKernelWithoutTheNewerFeaturesGetsWarningsAndWhatReplacesThem) {
  SBTEST_PREPARE();
  ASSERT_NO_FATAL_FAILURE(set_good_values());
  auto doctor = run_doctor("peer_pidfd,pass_rights,landlock,notif_addfd");
  EXPECT_EQ(doctor.exit_code, 0) << doctor.output;
  ASSERT_TRUE(doctor.json.is_object()) << doctor.output;
  EXPECT_EQ(doctor.json["bad"], false);
  struct Expect {
    const char* name;
    bool present;
    const char* verdict;
    const char* says;  // in the assessment
  } expectations[] = {
      {"SO_PEERGROUPS", true, "ok", "present"},
      {"SO_PEERPIDFD", false, "missing", "finds each caller's process by pid at accept"},
      {"Landlock ABI >= 2", false, "warn", "(the kernel has no Landlock)"},
      {"Landlock ABI >= 4", false, "warn", "seccomp layer alone"},
      {"seccomp NOTIF_ADDFD", false, "warn", "Linux < 5.9"},
      {"SO_PASSRIGHTS", false, "missing", "disposer"},
  };
  for (const auto& e : expectations) {
    const auto& f = doctor.features[e.name];
    EXPECT_EQ(f["present"], e.present) << f.dump();
    EXPECT_EQ(f["verdict"], e.verdict) << f.dump();
    EXPECT_NE(f["assessment"].get<std::string>().find(e.says), std::string::npos) << f.dump();
  }
  EXPECT_EQ(doctor.json["features_summary"]["warn"], 3);
  EXPECT_EQ(doctor.json["features_summary"]["missing"], 2);

  // For people: one line per absent feature, and the count.
  auto human = run_doctor("peer_pidfd,pass_rights,landlock,notif_addfd", {});
  EXPECT_EQ(human.exit_code, 0) << human.output;
  EXPECT_NE(human.output.find("\nKERNEL FEATURE "), std::string::npos) << human.output;
  EXPECT_NE(human.output.find("\nSO_PEERPIDFD: missing: absent: the broker finds each caller's process by pid"),
            std::string::npos)
      << human.output;
  EXPECT_NE(human.output.find("6 kernel features: 1 present, 5 absent (3 warn, 0 bad)\n"), std::string::npos)
      << human.output;
}

// Without SO_PEERGROUPS the broker drops every connection: that is bad, exit 1.
TEST(Doctor, AKernelWithoutPeerGroupsIsBad) {
  SBTEST_PREPARE();
  ASSERT_NO_FATAL_FAILURE(set_good_values());
  auto doctor = run_doctor("peer_groups");
  EXPECT_EQ(doctor.exit_code, 1) << doctor.output;
  ASSERT_TRUE(doctor.json.is_object()) << doctor.output;
  EXPECT_EQ(doctor.json["bad"], true);
  EXPECT_EQ(doctor.features["SO_PEERGROUPS"]["verdict"], "bad") << doctor.output;
  EXPECT_EQ(doctor.json["features_summary"]["bad"], 1);
  EXPECT_EQ(doctor.json["summary"]["bad"], 0);  // the settings are fine
}

}  // namespace
