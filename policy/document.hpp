// One parsed TOML policy document -> sockets and broker settings, with every
// problem reported at its FILE:LINE:COL. Internal to the policy library: the
// loader (loader.cpp) reads files and checks what spans several documents.
#pragma once

#include "printable.hpp"

#include "toml_include.hpp"

#include <optional>
#include <string>
#include <vector>

#include "diagnostic.hpp"
#include "policy.hpp"

namespace sockbroker::policy::detail {

// Collects diagnostics; in strict mode a warning is recorded as an error.
class Reporter {
 public:
  explicit Reporter(bool strict) : strict_(strict) {}

  void error(SourcePos where, std::string message);
  void warning(SourcePos where, std::string message);

  [[nodiscard]] bool has_errors() const noexcept { return errors_ > 0; }
  // Diagnostics ordered by file (in the order given), then line and column.
  [[nodiscard]] std::vector<Diagnostic> take_sorted(const std::vector<std::string>& file_order);

 private:
  bool strict_;
  std::size_t errors_ = 0;
  std::vector<Diagnostic> diagnostics_;
};

// Kernel limits a warning compares buffer sizes against; unset when unknown.
struct HostLimits {
  std::optional<long> rmem_max;
  std::optional<long> wmem_max;
};

struct ParsedSocket {
  SocketSpec spec;
  SourcePos listen_pos;  // of the listen value, for conflict messages
  bool usable = false;   // listen parsed: duplicates and conflicts can be checked
  std::vector<SourcePos> netns_path_pos;  // of each spec.netns_allow.paths value
};

// A [broker] key this document sets, for the "set in two files" check.
struct BrokerKey {
  std::string key;
  SourcePos where;
};

struct ParsedDocument {
  BrokerSettings broker;               // meaningful for the keys in broker_keys only
  std::vector<BrokerKey> broker_keys;  // in source order
  std::vector<ParsedSocket> sockets;   // in source order
};

[[nodiscard]] ParsedDocument read_document(const toml::table& root, const std::string& file, const HostLimits& limits,
                                           Reporter& reporter);

// "FILE:LINE:COL", for messages that point at another place.
[[nodiscard]] std::string to_string(const SourcePos& where);

}  // namespace sockbroker::policy::detail
