// Reading and matching `sockbroker audit` baselines. Addresses are compared in
// canonical form (inet_ntop, escape_name), so "[::0]:22" accepts "[::]:22".
#include "audit_baseline.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <fstream>
#include <sstream>

namespace sockbroker::cli {
namespace {

// The kernel keeps at most 15 bytes of a process name (TASK_COMM_LEN - 1).
constexpr std::size_t kMaxComm = 15;

struct Token {
  std::string text;
  int column = 0;  // 1-based
};

class LineParser {
 public:
  LineParser(const std::string& file, int line, std::vector<policy::Diagnostic>& diagnostics)
      : file_(file), line_(line), diagnostics_(diagnostics) {}

  void error(int column, std::string message) {
    diagnostics_.push_back({policy::Diagnostic::Severity::error, {file_, line_, column}, std::move(message)});
    ok_ = false;
  }
  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] policy::SourcePos pos(int column) const { return {file_, line_, column}; }

 private:
  const std::string& file_;
  int line_;
  std::vector<policy::Diagnostic>& diagnostics_;
  bool ok_ = true;
};

// Undoes escape_name: "\xHH" is the only escape. Reports a bad one at its column.
std::optional<std::string> unescape(const Token& token, LineParser& parser) {
  std::string out;
  const std::string& s = token.text;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    unsigned value = 0;
    if (i + 3 < s.size() && s[i + 1] == 'x') {
      auto [end, ec] = std::from_chars(s.data() + i + 2, s.data() + i + 4, value, 16);
      if (ec == std::errc{} && end == s.data() + i + 4) {
        out += static_cast<char>(value);
        i += 3;
        continue;
      }
    }
    parser.error(token.column + static_cast<int>(i),
                 "bad escape in \"" + s + "\": write a byte as \\xHH (two hex digits), a backslash as \\x5c");
    return std::nullopt;
  }
  return out;
}

bool parse_port(const Token& token, std::string_view text, int column, std::optional<std::uint16_t>* port,
                LineParser& parser) {
  if (text == "*") {
    port->reset();
    return true;
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value < 1 || value > 65535 ||
      (text.size() > 1 && text[0] == '0')) {
    parser.error(column, "bad port \"" + std::string(text) + "\" in \"" + token.text + "\": 1-65535 or *");
    return false;
  }
  *port = static_cast<std::uint16_t>(value);
  return true;
}

bool parse_ip_address(const Token& token, BaselineEntry& entry, LineParser& parser) {
  const std::string& s = token.text;
  std::string_view host, port;
  int host_column = token.column, port_column = 0;
  if (!s.empty() && s[0] == '[') {
    auto close = s.find("]:");
    if (close == std::string::npos) {
      parser.error(token.column, "bad address \"" + s + "\": write an IPv6 address as [ADDRESS]:PORT");
      return false;
    }
    host = std::string_view(s).substr(1, close - 1);
    host_column = token.column + 1;
    port = std::string_view(s).substr(close + 2);
    port_column = token.column + static_cast<int>(close) + 2;
    entry.family = AF_INET6;
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string::npos) {
      parser.error(token.column, "bad address \"" + s + "\": expected ADDRESS:PORT, e.g. 0.0.0.0:22 or [::]:22");
      return false;
    }
    host = std::string_view(s).substr(0, colon);
    port = std::string_view(s).substr(colon + 1);
    port_column = token.column + static_cast<int>(colon) + 1;
    entry.family = AF_INET;
    if (host.find(':') != std::string_view::npos) {
      parser.error(token.column, "bad address \"" + s + "\": write an IPv6 address in brackets, e.g. [::1]:22");
      return false;
    }
  }
  std::string_view scope;
  if (auto percent = host.find('%'); percent != std::string_view::npos) {
    scope = host.substr(percent);  // "%eth0", kept as written
    host = host.substr(0, percent);
  }
  std::uint8_t bytes[16] = {};
  char canonical[INET6_ADDRSTRLEN] = {};
  if (::inet_pton(entry.family, std::string(host).c_str(), bytes) != 1 ||
      ::inet_ntop(entry.family, bytes, canonical, sizeof canonical) == nullptr) {
    parser.error(host_column, "\"" + std::string(host) + "\" is not an " +
                                  (entry.family == AF_INET ? "IPv4" : "IPv6") + " address (host names are not resolved)");
    return false;
  }
  entry.host = std::string(canonical) + std::string(scope);
  return parse_port(token, port, port_column, &entry.port, parser);
}

std::vector<Token> split(const std::string& line) {
  std::vector<Token> tokens;
  std::size_t i = 0;
  while (i < line.size()) {
    if (line[i] == '#') break;
    if (line[i] == ' ' || line[i] == '\t' || line[i] == '\r') {
      ++i;
      continue;
    }
    std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r' && line[i] != '#') ++i;
    tokens.push_back({line.substr(start, i - start), static_cast<int>(start) + 1});
  }
  return tokens;
}

std::optional<BaselineEntry> parse_line(const std::string& line, LineParser& parser) {
  auto tokens = split(line);
  if (tokens.empty()) return std::nullopt;
  BaselineEntry entry;
  entry.where = parser.pos(tokens[0].column);
  entry.proto = tokens[0].text;
  if (entry.proto != "tcp" && entry.proto != "udp" && entry.proto != "unix") {
    parser.error(tokens[0].column, "unknown protocol \"" + entry.proto + "\": expected tcp, udp or unix");
    return std::nullopt;
  }
  if (tokens.size() < 2) {
    parser.error(static_cast<int>(line.find_last_not_of(" \t\r") + 2),
                 "missing address after \"" + entry.proto + "\": PROTO ADDRESS [PROCESS]");
    return std::nullopt;
  }
  const Token& address = tokens[1];
  if (entry.proto == "unix") {
    if (address.text[0] != '/' && address.text[0] != '@') {
      parser.error(address.column, "bad Unix address \"" + address.text +
                                       "\": an absolute path (/run/x.sock) or an abstract name (@name)");
      return std::nullopt;
    }
    auto raw = unescape(address, parser);
    if (!raw) return std::nullopt;
    entry.unix_address = (*raw)[0] == '@' ? "@" + escape_name(raw->substr(1)) : escape_name(*raw);
  } else if (!parse_ip_address(address, entry, parser)) {
    return std::nullopt;
  }
  if (tokens.size() >= 3 && tokens[2].text != "*") {
    auto comm = unescape(tokens[2], parser);
    if (!comm) return std::nullopt;
    if (comm->size() > kMaxComm) {
      parser.error(tokens[2].column, "process name \"" + tokens[2].text + "\" is longer than " +
                                         std::to_string(kMaxComm) +
                                         " bytes: the kernel's comm is truncated there, so it would never match");
      return std::nullopt;
    }
    entry.process = escape_name(*comm);
  }
  if (tokens.size() > 3) {
    parser.error(tokens[3].column, "unexpected \"" + tokens[3].text + "\" after the process name (PROTO ADDRESS [PROCESS])");
    return std::nullopt;
  }
  return entry;
}

}  // namespace

BaselineLoad parse_baseline(const std::string& file, const std::string& text) {
  BaselineLoad load;
  Baseline baseline;
  std::istringstream in(text);
  std::string line;
  bool ok = true;
  for (int number = 1; std::getline(in, line); ++number) {
    LineParser parser(file, number, load.diagnostics);
    auto entry = parse_line(line, parser);
    ok = ok && parser.ok();
    if (entry) baseline.entries.push_back(std::move(*entry));
  }
  if (ok) load.baseline = std::move(baseline);
  return load;
}

BaselineLoad load_baseline(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    BaselineLoad load;
    load.read_errno = errno != 0 ? errno : EIO;
    return load;
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    BaselineLoad load;
    load.read_errno = EIO;
    return load;
  }
  return parse_baseline(path, text.str());
}

const BaselineEntry* match_baseline(const Baseline& baseline, const Listener& listener,
                                    const std::vector<Owner>& owners) {
  for (const auto& entry : baseline.entries) {
    if (entry.proto != listener.proto) continue;
    if (entry.proto == "unix") {
      if (entry.unix_address != listener.address) continue;
    } else if (entry.family != listener.family || entry.host != listener.host ||
               (entry.port && *entry.port != listener.port)) {
      continue;
    }
    if (!entry.process.empty()) {
      bool held = false;
      for (const auto& owner : owners) held = held || owner.comm == entry.process;
      if (!held) continue;
    }
    return &entry;
  }
  return nullptr;
}

std::string baseline_line(const Listener& listener, const std::vector<Owner>& owners) {
  std::string line = listener.proto + " " + listener.address;
  // The lowest pid is the one that created the socket most of the time (the
  // others inherited or received it): that is the service to name.
  if (!owners.empty()) line += " " + owners.front().comm;
  return line;
}

}  // namespace sockbroker::cli
