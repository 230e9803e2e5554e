// Policies for tests, built rather than spliced: every string value (a path,
// a unit, a name) is quoted by one function, so a test never hand-writes
// TOML around an interpolated value.
//
//   sbtest::PolicyBuilder()
//       .broker("max_clients_per_uid", "1")
//       .socket("web", "0.0.0.0:80").set("reuse_port", "true").allow_user("nobody")
//       .toml()
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace sbtest {

// A TOML basic string holding `text` (quotes and escapes included).
[[nodiscard]] std::string toml_string(const std::string& text);

class PolicyBuilder {
 public:
  // `[broker] key = value`, value as TOML (a number, `true`, toml_string(...)).
  PolicyBuilder& broker(const std::string& key, const std::string& toml_value);
  // `[socket.NAME]` listening on `listen`; set() and allow*() apply to the
  // socket named last.
  PolicyBuilder& socket(const std::string& name, const std::string& listen);
  PolicyBuilder& set(const std::string& key, const std::string& toml_value);
  PolicyBuilder& set_string(const std::string& key, const std::string& text) { return set(key, toml_string(text)); }
  // One `[[socket.NAME.allow]]` rule: every key = string value given (AND).
  PolicyBuilder& allow(const std::vector<std::pair<std::string, std::string>>& rule);
  // The same with each value as TOML, for one that is not a string: a uid or
  // gid by number (`user = 65534`).
  PolicyBuilder& allow_toml(const std::vector<std::pair<std::string, std::string>>& rule);
  PolicyBuilder& allow_user(const std::string& user) { return allow({{"user", user}}); }

  [[nodiscard]] std::string toml() const;
  operator std::string() const { return toml(); }  // NOLINT: Broker::start takes the text

 private:
  struct Socket {
    std::string name;
    std::vector<std::pair<std::string, std::string>> settings;
    std::vector<std::vector<std::pair<std::string, std::string>>> rules;  // values as TOML
  };
  std::vector<std::pair<std::string, std::string>> broker_;
  std::vector<Socket> sockets_;
};

}  // namespace sbtest
