// The broker confining itself once start-up is over: it keeps only the
// capabilities the policy needs, sets NO_NEW_PRIVS and installs its own
// seccomp allow-list. What a compromised broker could still do is then what
// serving the policy takes, not what root can do.
//
// What is kept is chosen from the policy in force at start-up and cannot be
// regained later: a socket or rule added by a reload that needs a capability
// the broker gave up (transparent: CAP_NET_ADMIN; executable rules:
// CAP_SYS_PTRACE; netns = "request": CAP_SYS_ADMIN and setns(2)) fails closed
// (a bind_failed socket, a rule that never matches) until the broker is
// restarted with that policy. Accepted: a reload must not be a way to regain
// privilege, and the error says what to do (capability_hint).
#pragma once

#include <string>
#include <vector>

#include <sockbroker/fd.hpp>

#include "logger.hpp"
#include "policy.hpp"

namespace sockbroker::broker {

// One capability the broker keeps, and the first thing in the policy that
// needs it ("socket \"web\": transparent"), for the log line.
struct CapabilityNeed {
  int capability;  // CAP_* (cap_value_t)
  std::string why;
};

// What serving `policy` takes, without duplicates, CAP_NET_BIND_SERVICE first.
// Pure: no system calls.
[[nodiscard]] std::vector<CapabilityNeed> capabilities_needed(const policy::Policy& policy);

// For a socket that failed to bind with EPERM or EACCES after confinement:
// "; it needs CAP_NET_ADMIN (transparent), which the broker gave up at start-up
// because no socket needed it then: restart the broker to grant it", or ""
// when the broker holds every capability the socket (and its rules) need.
// Callers append it to the bind_failed error.
[[nodiscard]] std::string capability_hint(const policy::SocketSpec& spec);

// Whether the broker can read another uid's /proc/PID/exe (CAP_SYS_PTRACE is
// effective): confined, only while a rule uses `executable` kept it.
[[nodiscard]] bool can_read_callers_executables();

// Drops every capability `policy` does not need (effective, permitted,
// inheritable, ambient and bounding sets), sets NO_NEW_PRIVS and loads the
// seccomp allow-list. Call once, after the start-up binds and the control
// socket, before serving, while the process has one thread. Logs what it
// kept; on failure the process may be partly confined and should exit.
[[nodiscard]] Status confine(const policy::Policy& policy, spdlog::logger& log);

}  // namespace sockbroker::broker
