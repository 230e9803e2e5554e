// Re-reading the policy: atomic. An invalid policy changes nothing; a valid one
// replaces the snapshot and the table (see SocketTable::apply).
#pragma once

#include <string>
#include <vector>

#include "audit.hpp"
#include "broker_state.hpp"
#include "logger.hpp"

namespace sockbroker::broker {

struct ReloadOutcome {
  bool applied = false;  // the new policy is in force (a new generation)
  bool ok = false;       // applied, and every socket it had to bind is bound
  std::string message;               // one line
  std::vector<std::string> details;  // diagnostics (FILE:LINE:COL: ...) or what changed
  std::vector<std::string> failed_sockets;  // applied, but these are not bound
};

// Audits reload / reload_failed and tells systemd (RELOADING=1 ... READY=1).
[[nodiscard]] ReloadOutcome reload_policy(BrokerState& state, Audit& audit, spdlog::logger& log);

}  // namespace sockbroker::broker
