#include "policy_builder.hpp"

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace sbtest {

// A JSON string literal is a TOML basic string: the same quotes, and every
// escape JSON writes (\", \\, \b, \f, \n, \r, \t, \uXXXX) is one TOML reads.
std::string toml_string(const std::string& text) { return nlohmann::json(text).dump(); }

PolicyBuilder& PolicyBuilder::broker(const std::string& key, const std::string& toml_value) {
  broker_.emplace_back(key, toml_value);
  return *this;
}

PolicyBuilder& PolicyBuilder::socket(const std::string& name, const std::string& listen) {
  sockets_.push_back(Socket{name, {{"listen", toml_string(listen)}}, {}});
  return *this;
}

PolicyBuilder& PolicyBuilder::set(const std::string& key, const std::string& toml_value) {
  if (sockets_.empty()) throw std::logic_error("PolicyBuilder::set before socket()");
  sockets_.back().settings.emplace_back(key, toml_value);
  return *this;
}

PolicyBuilder& PolicyBuilder::allow(const std::vector<std::pair<std::string, std::string>>& rule) {
  std::vector<std::pair<std::string, std::string>> quoted;
  for (const auto& [key, text] : rule) quoted.emplace_back(key, toml_string(text));
  return allow_toml(quoted);
}

PolicyBuilder& PolicyBuilder::allow_toml(const std::vector<std::pair<std::string, std::string>>& rule) {
  if (sockets_.empty()) throw std::logic_error("PolicyBuilder::allow before socket()");
  sockets_.back().rules.push_back(rule);
  return *this;
}

std::string PolicyBuilder::toml() const {
  std::string out;
  if (!broker_.empty()) {
    out += "[broker]\n";
    for (const auto& [key, value] : broker_) out += key + " = " + value + "\n";
  }
  for (const Socket& s : sockets_) {
    const std::string table = "socket." + toml_string(s.name);
    out += "\n[" + table + "]\n";
    for (const auto& [key, value] : s.settings) out += key + " = " + value + "\n";
    for (const auto& rule : s.rules) {
      out += "[[" + table + ".allow]]\n";
      for (const auto& [key, value] : rule) out += key + " = " + value + "\n";
    }
  }
  return out;
}

}  // namespace sbtest
