#include "reload.hpp"

#include <systemd/sd-daemon.h>
#include <time.h>

#include "loader.hpp"

namespace sockbroker::broker {
namespace {

std::uint64_t monotonic_usec() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<std::uint64_t>(now.tv_sec) * 1000000u + static_cast<std::uint64_t>(now.tv_nsec) / 1000u;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + name;
  return out.empty() ? "none" : out;
}

}  // namespace

ReloadOutcome reload_policy(BrokerState& state, Audit& audit, spdlog::logger& log) {
  ::sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", static_cast<unsigned long long>(monotonic_usec()));
  ReloadOutcome outcome;
  auto loaded = policy::load_policy(state.policy_paths);
  for (const auto& d : loaded.diagnostics) outcome.details.push_back(d.format());

  if (!loaded.policy) {
    std::size_t errors = 0;
    for (const auto& d : loaded.diagnostics) errors += d.severity == policy::Diagnostic::Severity::error;
    outcome.message = "policy not reloaded: " + std::to_string(errors) + " error(s); generation " +
                      std::to_string(state.generation) + " stays in force";
    log.error("{}", outcome.message);
    for (const auto& line : outcome.details) log.error("{}", line);
    audit.emit("reload_failed", {{"generation", state.generation}, {"errors", outcome.details}});
    ::sd_notify(0, "READY=1\nSTATUS=reload refused: the policy has errors");
    return outcome;
  }

  auto changes = state.table.apply(*loaded.policy, state.leases, audit, log);
  state.policy = std::move(*loaded.policy);
  ++state.generation;
  outcome.ok = true;
  outcome.message = "policy generation " + std::to_string(state.generation) + ": " +
                    std::to_string(changes.added.size()) + " added, " + std::to_string(changes.changed.size()) +
                    " rebound, " + std::to_string(changes.removed.size()) + " removed, " +
                    std::to_string(changes.unchanged) + " unchanged";
  outcome.details.push_back("added: " + joined(changes.added));
  outcome.details.push_back("rebound: " + joined(changes.changed));
  outcome.details.push_back("removed: " + joined(changes.removed));
  log.info("reloaded: {}", outcome.message);
  audit.emit("reload", {{"generation", state.generation},
                        {"added", changes.added},
                        {"changed", changes.changed},
                        {"removed", changes.removed},
                        {"unchanged", changes.unchanged}});
  std::string status = "serving " + std::to_string(state.table.bound_count()) + " sockets, generation " +
                       std::to_string(state.generation);
  ::sd_notifyf(0, "READY=1\nSTATUS=%s", status.c_str());
  return outcome;
}

}  // namespace sockbroker::broker
