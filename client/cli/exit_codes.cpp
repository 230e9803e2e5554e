#include "exit_codes.hpp"

#include <grp.h>
#include <pwd.h>

#include <sockbroker/client.h>

#include <cstring>
#include <iostream>
#include <regex>
#include <string>

namespace sockbroker::cli {

int exit_code_for(const Error& error) noexcept {
  switch (error.code) {
    case SOCKBROKER_E_UNAVAILABLE: return kExitUnavailable;
    case SOCKBROKER_E_UNKNOWN: return kExitUnknown;
    case SOCKBROKER_E_DENIED: return kExitDenied;
    case SOCKBROKER_E_QUOTA: return kExitQuota;
    case SOCKBROKER_E_BIND: return kExitBind;
    case SOCKBROKER_E_PROTOCOL: return kExitProtocol;
    case SOCKBROKER_E_INVALID: return kExitUsage;
    default: return kExitBind;  // EX_OSERR for local system errors too
  }
}

namespace {

// "uid 65534, gid 65534" in a broker's message, with the names this side
// knows: the broker sends numbers only (a lookup there would stall its loop).
std::string with_account_names(std::string line) {
  static const std::regex ids(R"(uid (\d+), gid (\d+))");
  std::smatch match;
  if (!std::regex_search(line, match, ids)) return line;
  std::string named = "uid " + match[1].str();
  passwd user{};
  passwd* found_user = nullptr;
  char buffer[4096];
  if (::getpwuid_r(static_cast<uid_t>(std::stoul(match[1].str())), &user, buffer, sizeof buffer, &found_user) == 0 &&
      found_user != nullptr) {
    named += " (" + std::string(found_user->pw_name) + ")";
  }
  named += ", gid " + match[2].str();
  group grp{};
  group* found_group = nullptr;
  if (::getgrgid_r(static_cast<gid_t>(std::stoul(match[2].str())), &grp, buffer, sizeof buffer, &found_group) == 0 &&
      found_group != nullptr) {
    named += " (" + std::string(found_group->gr_name) + ")";
  }
  return line.replace(static_cast<std::size_t>(match.position(0)), static_cast<std::size_t>(match.length(0)), named);
}

}  // namespace

int report(const Error& error, std::string_view socket, std::string_view action) {
  std::string line = with_account_names(error.message);
  if (error.code == 0 && error.sys_errno != 0) line += std::string(": ") + std::strerror(error.sys_errno);
  if (!socket.empty() && line.find("\"" + std::string(socket) + "\"") == std::string::npos) {
    // The broker names the request it refused ("revoke: permission denied:
    // ..."); once the line starts with it, once is enough.
    const std::string named = std::string(action) + ": ";
    if (line.starts_with(named)) line.erase(0, named.size());
    line = "cannot " + std::string(action) + " \"" + std::string(socket) + "\": " + line;
  }
  std::cerr << "sockbroker: " << line << '\n';
  return exit_code_for(error);
}

}  // namespace sockbroker::cli
