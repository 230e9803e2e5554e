// The operator's list of accepted listeners for `sockbroker audit --baseline`:
// one listener per line, `PROTO ADDRESS [PROCESS]`, '#' comments.
//
//   tcp  0.0.0.0:22     sshd      # the port may be *, the process may be * or left out
//   udp  [::]:*         chronyd
//   unix /run/dbus/system_bus_socket
//   unix @/tmp/.X11-unix/X0
//
// Mistakes are reported as FILE:LINE:COL diagnostics, like `sockbroker check`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "diagnostic.hpp"
#include "sock_diag.hpp"

namespace sockbroker::cli {

struct BaselineEntry {
  std::string proto;  // "tcp", "udp" or "unix"
  // IP: the host as inet_ntop writes it (plus "%scope"), and the port (none: "*").
  int family = 0;
  std::string host;
  std::optional<std::uint16_t> port;
  // Unix: the address in escape_name form ("/path" or "@name").
  std::string unix_address;
  std::string process;  // a comm; empty: any process
  policy::SourcePos where;
};

struct Baseline {
  std::vector<BaselineEntry> entries;
};

struct BaselineLoad {
  std::optional<Baseline> baseline;  // set when the file was read and is valid
  std::vector<policy::Diagnostic> diagnostics;
  int read_errno = 0;  // the file could not be read at all
};

[[nodiscard]] BaselineLoad load_baseline(const std::string& path);
[[nodiscard]] BaselineLoad parse_baseline(const std::string& file, const std::string& text);

// The first entry accepting this listener held by these processes, or null.
[[nodiscard]] const BaselineEntry* match_baseline(const Baseline& baseline, const Listener& listener,
                                                  const std::vector<Owner>& owners);

// The baseline line that accepts exactly this listener (for --write-baseline).
[[nodiscard]] std::string baseline_line(const Listener& listener, const std::vector<Owner>& owners);

}  // namespace sockbroker::cli
