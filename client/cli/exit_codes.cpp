#include "exit_codes.hpp"

#include <sockbroker/client.h>

#include <cstring>
#include <iostream>
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

int report(const Error& error, std::string_view socket, std::string_view action) {
  std::string line = error.message;
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
