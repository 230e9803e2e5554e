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
  // Applied; but a socket it had to bind that is not bound is a failure the
  // operator must see (the broker retries it meanwhile).
  outcome.applied = true;
  outcome.ok = changes.failed.empty();
  outcome.message = "policy generation " + std::to_string(state.generation) + ": " +
                    std::to_string(changes.added.size()) + " added, " + std::to_string(changes.changed.size()) +
                    " rebound, " + std::to_string(changes.removed.size()) + " removed, " +
                    std::to_string(changes.unchanged) + " unchanged";
  if (!changes.in_place.empty()) {
    outcome.message += ", " + std::to_string(changes.in_place.size()) + " changed in place";
  }
  if (!changes.failed.empty()) {
    outcome.message += "; " + std::to_string(changes.failed.size()) + " socket(s) not bound (retried with backoff)";
  }
  outcome.details.push_back("added: " + joined(changes.added));
  for (const auto& line : changes.changed) outcome.details.push_back("rebound: " + line);
  for (const auto& line : changes.in_place) outcome.details.push_back("changed in place: " + line);
  outcome.details.push_back("removed: " + joined(changes.removed));
  for (const auto& line : changes.failed) {
    outcome.details.push_back("not bound: " + line);
    outcome.failed_sockets.push_back(line.substr(0, line.find(':')));
  }
  if (outcome.ok) {
    log.info("reloaded: {}", outcome.message);
  } else {
    log.error("reloaded: {}", outcome.message);
  }
  std::vector<std::string> changed_names;
  for (const auto& line : changes.changed) changed_names.push_back(line.substr(0, line.find(':')));
  audit.emit("reload", {{"generation", state.generation},
                        {"added", changes.added},
                        {"changed", changed_names},
                        {"rebound", changes.changed},
                        {"changed_in_place", changes.in_place},
                        {"removed", changes.removed},
                        {"unchanged", changes.unchanged},
                        {"failed", changes.failed}});
  std::string status = "serving " + std::to_string(state.table.bound_count()) + " sockets, generation " +
                       std::to_string(state.generation);
  ::sd_notifyf(0, "READY=1\nSTATUS=%s", status.c_str());
  return outcome;
}

}  // namespace sockbroker::broker
