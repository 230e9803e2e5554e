// `sockbroker doctor` reading real /proc/sys values: only per-network-namespace
// settings are changed, inside the test's private namespace, so the host's
// own settings are never touched.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "harness.hpp"

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
  nlohmann::json json;
};

// As uid 65534: everything doctor reads is world-readable.
Doctor run_doctor() {
  auto result = sbtest::run_command_as(sbtest::kNobody, sbtest::kNogroup, {sbtest::programs().sockbroker, "doctor", "--json"});
  Doctor doctor{result.exit_code, result.output, {}, nlohmann::json::parse(result.output, nullptr, false)};
  if (doctor.json.is_object()) {
    for (const auto& s : doctor.json["settings"]) doctor.settings[s["key"].get<std::string>()] = s;
  }
  return doctor;
}

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

}  // namespace
