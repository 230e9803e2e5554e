// The policy schema: what each key of one TOML document may hold, and every way
// an operator can get it wrong, reported where it was written.
//
// Errors about a key (unknown, not applicable here) point at the key; errors
// about a value (wrong type, out of range, unknown user) point at the value.
#include "document.hpp"

#include "printable.hpp"

#include <net/if.h>

#include <sockbroker/fd.hpp>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <span>
#include <string_view>

#include "accounts.hpp"
#include "socket_name.hpp"
#include "sort_records.hpp"

namespace sockbroker::policy::detail {
namespace {

using namespace std::string_literals;

constexpr std::int64_t kMaxU32 = 4294967295;
// (uid_t)-1 and (gid_t)-1 mean "no change" to chown(2) and "invalid" to
// SO_PEERCRED: never a real account.
constexpr std::int64_t kMaxId = 4294967294;

constexpr std::array<std::string_view, 2> kTopKeys = {"broker", "socket"};
constexpr std::array<std::string_view, 9> kBrokerKeys = {
    "admin_group",           "control_mode",  "max_clients",        "max_clients_per_uid", "request_timeout_ms",
    "max_grants_per_client", "audit_failure", "audit_rate_per_uid", "audit_burst_per_uid"};
constexpr std::array<std::string_view, 20> kSocketKeys = {
    "listen",      "type",         "reuse_port",  "max_grants",     "backlog",        "bind_to_device",
    "free_bind",   "transparent",  "fast_open",   "v6only",         "receive_buffer", "send_buffer",
    "socket_user", "socket_group", "socket_mode", "allow_abstract", "netns",          "netns_owner",
    "netns_path",  "allow"};
// The netns_owner value that means "the uid that asks".
constexpr std::string_view kRequester = "requester";
constexpr std::array<std::string_view, 5> kRuleKeys = {"user", "group", "unit", "executable", "cgroup"};
constexpr std::array<std::string_view, 11> kUnitSuffixes = {".service",   ".socket", ".scope", ".slice",
                                                            ".target",    ".timer",  ".path",  ".mount",
                                                            ".automount", ".swap",   ".device"};

}  // namespace

namespace {

const char* type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a floating-point number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

// Levenshtein distance, for "did you mean". Keys are short; longer input is
// not a typo of any key, so it is not measured.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string did_you_mean(std::string_view key, std::span<const std::string_view> known) {
  if (key.size() > 64) return {};
  std::string_view best;
  std::size_t best_distance = SIZE_MAX;
  for (std::string_view candidate : known) {
    std::size_t d = edit_distance(key, candidate);
    if (d < best_distance) {
      best_distance = d;
      best = candidate;
    }
  }
  // Two edits catch transpositions and a dropped letter; more suggests
  // unrelated words ("port" for "user").
  if (best_distance <= 2 && best_distance < key.size()) return " (did you mean " + sockbroker::quoted(best) + "?)";
  return {};
}

bool bare_key(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

// How the operator would write the table header, for "in [socket.web]".
std::string socket_header(std::string_view name) {
  return "[socket." + (bare_key(name) ? std::string(name) : sockbroker::quoted(name)) + "]";
}

std::string rule_header(std::string_view name) {
  return "[[socket." + (bare_key(name) ? std::string(name) : sockbroker::quoted(name)) + ".allow]]";
}

bool all_digits(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Same rule as the kernel's dev_valid_name(): what SO_BINDTODEVICE accepts.
bool valid_interface_name(std::string_view name) {
  if (name.empty() || name.size() >= IFNAMSIZ || name == "." || name == "..") return false;
  return std::none_of(name.begin(), name.end(), [](char c) {
    return c == '/' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' ||
           c == '\0';
  });
}

bool valid_unit_chars(std::string_view unit) {
  return std::all_of(unit.begin(), unit.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' || c == '_' ||
           c == '.' || c == '-' || c == '@' || c == '\\';
  });
}

bool has_unit_suffix(std::string_view unit) {
  return std::any_of(kUnitSuffixes.begin(), kUnitSuffixes.end(), [&](std::string_view suffix) {
    return unit.size() > suffix.size() && unit.substr(unit.size() - suffix.size()) == suffix;
  });
}

// kSocketKeys.size() when KEY is not a socket key.
constexpr std::size_t socket_key_index(std::string_view key) {
  return static_cast<std::size_t>(std::find(kSocketKeys.begin(), kSocketKeys.end(), key) - kSocketKeys.begin());
}

// The index of a key the code names, found while compiling; a misspelt one
// does not compile.
consteval std::size_t socket_key(std::string_view key) {
  const std::size_t index = socket_key_index(key);
  if (index == kSocketKeys.size()) throw "not a socket key";
  return index;
}

// Where each key of one [socket.NAME] table was written, for the checks that
// look at several keys together. Line and column only: the file name joins
// them when a message is made, so a socket without mistakes copies no strings.
class SeenKeys {
 public:
  struct Seen {
    toml::source_position key;
    toml::source_position value;
  };

  void add(std::size_t index, const toml::key& key, const toml::node& value) {
    slots_[index] = Seen{key.source().begin, value.source().begin};
  }
  // nullptr when the table did not set the key (an index from socket_key).
  [[nodiscard]] const Seen* find(std::size_t index) const { return slots_[index] ? &*slots_[index] : nullptr; }

 private:
  std::array<std::optional<Seen>, kSocketKeys.size()> slots_{};
};

class DocumentReader {
 public:
  DocumentReader(const std::string& file, const HostLimits& limits, Reporter& reporter)
      : file_(file), limits_(limits), reporter_(reporter) {}

  ParsedDocument read(const toml::table& root) {
    ParsedDocument document;
    for (auto&& [key, node] : root) {
      if (key.str() == "broker") {
        read_broker(node, document);
      } else if (key.str() == "socket") {
        read_sockets(node, document);
      } else {
        unknown_key(key, "at the top level", kTopKeys);
      }
    }
    // toml++ keeps tables sorted by key; "later" in duplicate and conflict
    // messages means later in the file, so restore the written order.
    stable_sort_records(document.sockets, [](const ParsedSocket& a, const ParsedSocket& b) {
      return std::pair(a.spec.where.line, a.spec.where.column) < std::pair(b.spec.where.line, b.spec.where.column);
    });
    return document;
  }

 private:
  SourcePos at(const toml::source_region& region) const { return at(region.begin); }
  SourcePos at(const toml::source_position& position) const {
    return SourcePos{file_, static_cast<int>(position.line), static_cast<int>(position.column)};
  }

  void unknown_key(const toml::key& key, const std::string& where, std::span<const std::string_view> known) {
    reporter_.error(at(key.source()),
                    "unknown key " + sockbroker::quoted(key.str()) + " " + where + did_you_mean(key.str(), known));
  }

  void wrong_type(std::string_view key, const toml::node& node, const char* expected) {
    reporter_.error(at(node.source()), std::string(key) + " must be " + expected + ", not " + type_name(node));
  }

  std::optional<std::int64_t> integer(std::string_view key, const toml::node& node, std::int64_t lo, std::int64_t hi) {
    const auto* value = node.as_integer();
    if (value == nullptr) {
      wrong_type(key, node, "an integer");
      return std::nullopt;
    }
    std::int64_t v = value->get();
    if (v < lo || v > hi) {
      reporter_.error(at(node.source()), std::string(key) + " = " + std::to_string(v) + " is out of range " +
                                             std::to_string(lo) + ".." + std::to_string(hi));
      return std::nullopt;
    }
    return v;
  }

  std::optional<bool> boolean(std::string_view key, const toml::node& node) {
    const auto* value = node.as_boolean();
    if (value == nullptr) {
      wrong_type(key, node, "a boolean (true or false)");
      return std::nullopt;
    }
    return value->get();
  }

  const std::string* string(std::string_view key, const toml::node& node) {
    const auto* value = node.as_string();
    if (value == nullptr) {
      wrong_type(key, node, "a string");
      return nullptr;
    }
    if (!no_nul(key, node, value->get())) return nullptr;
    return &value->get();
  }

  // TOML allows "\u0000"; C APIs stop there, so "root\u0000x" would be
  // looked up as "root" and "127.0.0.1\u0000x:80" bound as 127.0.0.1.
  bool no_nul(std::string_view key, const toml::node& node, const std::string& text) {
    if (text.find('\0') == std::string::npos) return true;
    reporter_.error(at(node.source()), std::string(key) + " " + sockbroker::quoted(text) + " contains a NUL byte");
    return false;
  }

  // A uid or gid: an integer, or a name (a string of digits is an id when no
  // account has that name, as chown(1) does).
  template <class Id>
  std::optional<Id> account(std::string_view key, const toml::node& node, const char* what,
                            Result<std::optional<Id>> (*find)(const std::string&)) {
    if (node.is_integer()) {
      auto v = integer(key, node, 0, kMaxId);
      if (!v) return std::nullopt;
      return static_cast<Id>(*v);
    }
    const auto* value = node.as_string();
    if (value == nullptr) {
      wrong_type(key, node, (std::string("a ") + what + " name or an integer id").c_str());
      return std::nullopt;
    }
    const std::string& name = value->get();
    if (name.empty()) {
      reporter_.error(at(node.source()), std::string(key) + " must not be empty");
      return std::nullopt;
    }
    if (!no_nul(key, node, name)) return std::nullopt;
    auto found = find(name);
    if (!found) {
      reporter_.error(at(node.source()), found.error().message);
      return std::nullopt;
    }
    if (*found) return **found;
    if (all_digits(name) && name.size() <= 10 && std::stoll(name) <= kMaxId) return static_cast<Id>(std::stoll(name));
    reporter_.error(at(node.source()), std::string("unknown ") + what + " " + sockbroker::quoted(name));
    return std::nullopt;
  }

  std::optional<uid_t> user(std::string_view key, const toml::node& node) {
    return account<uid_t>(key, node, "user", &find_user);
  }

  std::optional<gid_t> group(std::string_view key, const toml::node& node) {
    return account<gid_t>(key, node, "group", &find_group);
  }

  // A permission mode written as a string, "0660": as an integer, 660 would
  // silently be decimal (01224) and TOML's 0o660 is easy to get wrong.
  std::optional<mode_t> mode(std::string_view key, const toml::node& node) {
    const auto* value = node.as_string();
    if (value == nullptr) {
      reporter_.error(at(node.source()),
                      std::string(key) + " must be a string of octal digits such as \"0660\", not " + type_name(node));
      return std::nullopt;
    }
    const std::string& text = value->get();
    if (text.empty() || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '7'; })) {
      reporter_.error(at(node.source()),
                      std::string(key) + " " + sockbroker::quoted(text) + " is not an octal mode such as \"0660\"");
      return std::nullopt;
    }
    unsigned long v = 0;
    for (char c : text) {
      v = v * 8 + static_cast<unsigned>(c - '0');
      if (v > 07777) break;  // already too big; stop before it can overflow
    }
    if (v > 0777) {
      reporter_.error(at(node.source()), std::string(key) + " " + sockbroker::quoted(text) +
                                             " is above \"0777\" (setuid, setgid and sticky bits are not allowed)");
      return std::nullopt;
    }
    return static_cast<mode_t>(v);
  }

  void read_broker(const toml::node& node, ParsedDocument& document) {
    const auto* table = node.as_table();
    if (table == nullptr) {
      wrong_type("broker", node, "a table ([broker])");
      return;
    }
    BrokerSettings& broker = document.broker;
    for (auto&& [key, value] : *table) {
      const std::string name(key.str());
      if (name == "admin_group") {
        if (auto g = group(name, value)) broker.admin_group = *g;
      } else if (name == "control_mode") {
        if (auto m = mode(name, value)) broker.control_mode = *m;
      } else if (name == "max_clients") {
        if (auto v = integer(name, value, 1, kMaxU32)) broker.max_clients = static_cast<std::uint32_t>(*v);
      } else if (name == "max_clients_per_uid") {
        if (auto v = integer(name, value, 1, kMaxU32)) broker.max_clients_per_uid = static_cast<std::uint32_t>(*v);
      } else if (name == "max_grants_per_client") {
        if (auto v = integer(name, value, 1, kMaxU32)) broker.max_grants_per_client = static_cast<std::uint32_t>(*v);
      } else if (name == "request_timeout_ms") {
        if (auto v = integer(name, value, 1, kMaxU32)) broker.request_timeout_ms = static_cast<std::uint32_t>(*v);
      } else if (name == "audit_failure") {
        if (const std::string* text = string(name, value)) {
          if (*text == "deny") {
            broker.audit_failure = AuditFailure::deny;
          } else if (*text == "continue") {
            broker.audit_failure = AuditFailure::keep_granting;
          } else {
            reporter_.error(at(value.source()),
                            "unknown audit_failure " + sockbroker::quoted(*text) + " (expected \"deny\" or \"continue\")");
          }
        }
      } else if (name == "audit_rate_per_uid") {
        if (auto v = integer(name, value, 0, kMaxU32)) broker.audit_rate_per_uid = static_cast<std::uint32_t>(*v);
      } else if (name == "audit_burst_per_uid") {
        if (auto v = integer(name, value, 1, kMaxU32)) broker.audit_burst_per_uid = static_cast<std::uint32_t>(*v);
      } else {
        unknown_key(key, "in [broker]", kBrokerKeys);
        continue;
      }
      document.broker_keys.push_back(BrokerKey{name, at(key.source())});
    }
  }

  void read_sockets(const toml::node& node, ParsedDocument& document) {
    const auto* table = node.as_table();
    if (table == nullptr) {
      wrong_type("socket", node, "a table of sockets ([socket.NAME])");
      return;
    }
    document.sockets.reserve(document.sockets.size() + table->size());
    for (auto&& [key, value] : *table) {
      if (auto parsed = read_socket(key, value)) document.sockets.push_back(std::move(*parsed));
    }
  }

  std::optional<ParsedSocket> read_socket(const toml::key& key, const toml::node& node) {
    const std::string name(key.str());
    if (!valid_socket_name(name)) {
      reporter_.error(at(key.source()), "invalid socket name " + sockbroker::quoted(name) + ": names are 1.." +
                                            std::to_string(kMaxNameLength) + " characters of [A-Za-z0-9_.-]");
    }
    const auto* table = node.as_table();
    if (table == nullptr) {
      reporter_.error(at(node.source()), "socket " + sockbroker::quoted(name) + " must be a table (" + socket_header(name) +
                                             "), not " + type_name(node));
      return std::nullopt;
    }

    ParsedSocket parsed;
    SocketSpec& spec = parsed.spec;
    spec.name = name;
    spec.where = at(table->source());
    SeenKeys seen;

    for (auto&& [k, value] : *table) {
      const std::string_view field = k.str();
      const std::size_t index = socket_key_index(field);
      if (index == kSocketKeys.size()) {
        unknown_key(k, "in " + socket_header(name), kSocketKeys);
        continue;
      }
      seen.add(index, k, value);
      if (field == "listen") {
        if (const std::string* text = string(field, value)) {
          parsed.listen_pos = at(value.source());
          auto address = parse_address(*text);
          if (address) {
            spec.listen = std::move(*address);
            parsed.usable = true;
          } else {
            reporter_.error(at(value.source()),
                            "invalid listen address " + sockbroker::quoted(*text) + ": " + address.error().message);
          }
        }
      } else if (field == "type") {
        if (const std::string* text = string(field, value)) {
          if (*text == "stream") {
            spec.type = SocketType::stream;
          } else if (*text == "datagram") {
            spec.type = SocketType::datagram;
          } else if (*text == "seqpacket") {
            spec.type = SocketType::seqpacket;
          } else {
            reporter_.error(at(value.source()), "unknown socket type " + sockbroker::quoted(*text) +
                                                    " (expected \"stream\", \"datagram\" or \"seqpacket\")");
          }
        }
      } else if (field == "reuse_port") {
        if (auto b = boolean(field, value)) spec.reuse_port = *b;
      } else if (field == "max_grants") {
        if (auto v = integer(field, value, 0, kMaxU32)) spec.max_grants = static_cast<std::uint32_t>(*v);
      } else if (field == "backlog") {
        if (auto v = integer(field, value, 1, 65535)) spec.backlog = static_cast<int>(*v);
      } else if (field == "bind_to_device") {
        if (const std::string* text = string(field, value)) {
          if (valid_interface_name(*text)) {
            spec.bind_to_device = *text;
          } else {
            reporter_.error(at(value.source()), "bind_to_device " + sockbroker::quoted(*text) +
                                                    " is not an interface name (1..15 bytes, no \"/\", \":\" "
                                                    "or whitespace)");
          }
        }
      } else if (field == "free_bind") {
        if (auto b = boolean(field, value)) spec.free_bind = *b;
      } else if (field == "transparent") {
        if (auto b = boolean(field, value)) spec.transparent = *b;
      } else if (field == "fast_open") {
        if (auto v = integer(field, value, 0, INT_MAX)) spec.fast_open = static_cast<int>(*v);
      } else if (field == "v6only") {
        if (auto b = boolean(field, value)) spec.v6only = *b;
      } else if (field == "receive_buffer") {
        if (auto v = integer(field, value, 1, INT_MAX)) spec.receive_buffer = static_cast<int>(*v);
      } else if (field == "send_buffer") {
        if (auto v = integer(field, value, 1, INT_MAX)) spec.send_buffer = static_cast<int>(*v);
      } else if (field == "socket_user") {
        if (auto u = user(field, value)) spec.socket_user = *u;
      } else if (field == "socket_group") {
        if (auto g = group(field, value)) spec.socket_group = *g;
      } else if (field == "socket_mode") {
        if (auto m = mode(field, value)) spec.socket_mode = *m;
      } else if (field == "allow_abstract") {
        if (auto b = boolean(field, value)) spec.allow_abstract = *b;
      } else if (field == "netns") {
        if (const std::string* text = string(field, value)) {
          if (*text == "broker") {
            spec.netns = NetnsMode::broker;
          } else if (*text == "request") {
            spec.netns = NetnsMode::request;
          } else {
            reporter_.error(at(value.source()),
                            "unknown netns " + sockbroker::quoted(*text) + " (expected \"broker\" or \"request\")");
          }
        }
      } else if (field == "netns_owner") {
        read_netns_owners(value, spec.netns_allow);
      } else if (field == "netns_path") {
        read_netns_paths(value, parsed);
      } else if (field == "allow") {
        read_rules(name, value, spec);
      }
    }

    if (seen.find(socket_key("listen")) == nullptr) {
      reporter_.error(spec.where, "socket " + sockbroker::quoted(name) + " has no listen address (listen = \"...\")");
    }
    if (parsed.usable) check_address_fit(parsed, seen);
    check_options(spec, seen);
    check_netns(spec, seen);
    return parsed;
  }

  // The elements of a key that takes one value or an array of them.
  std::vector<const toml::node*> one_or_many(std::string_view key, const toml::node& node, const char* what) {
    std::vector<const toml::node*> out;
    if (const auto* array = node.as_array()) {
      if (array->empty()) reporter_.error(at(node.source()), std::string(key) + " must name at least one " + what);
      for (const toml::node& element : *array) out.push_back(&element);
    } else {
      out.push_back(&node);
    }
    return out;
  }

  void read_netns_owners(const toml::node& node, NetnsAllow& allow) {
    for (const toml::node* element : one_or_many("netns_owner", node, "owner")) {
      if (const auto* text = element->as_string(); text != nullptr && text->get() == kRequester) {
        allow.owned_by_requester = true;
        continue;
      }
      if (!element->is_string() && !element->is_integer()) {
        wrong_type("netns_owner", *element, "\"requester\", a user name or a uid (or an array of them)");
        continue;
      }
      if (auto uid = user("netns_owner", *element)) allow.owners.push_back(*uid);
    }
  }

  // netns_path patterns: absolute, written plainly (the broker walks them a
  // directory at a time and follows no link), wildcards in the last component
  // only (the broker lists one directory, never a tree).
  void read_netns_paths(const toml::node& node, ParsedSocket& parsed) {
    for (const toml::node* element : one_or_many("netns_path", node, "path")) {
      const std::string* text = string("netns_path", *element);
      if (text == nullptr) continue;
      const std::string& path = *text;
      const auto bad = [&](const std::string& why) {
        reporter_.error(at(element->source()), "netns_path " + sockbroker::quoted(path) + " " + why);
      };
      if (path.empty() || path.front() != '/') {
        bad("must be an absolute path such as \"/run/netns/ctr-*\"");
        continue;
      }
      if (path.size() >= PATH_MAX) {
        bad("is too long");
        continue;
      }
      const std::size_t last = path.rfind('/');
      if (last + 1 == path.size()) {
        bad("ends in \"/\": name the namespace files, such as \"/run/netns/*\"");
        continue;
      }
      bool plain = true;
      for (std::size_t start = 1; start <= last && plain;) {
        const std::size_t end = path.find('/', start);
        const std::string_view part(path.data() + start, end - start);
        plain = !part.empty() && part != "." && part != "..";
        start = end + 1;
      }
      const std::string_view name(path.data() + last + 1, path.size() - last - 1);
      if (!plain || name == "." || name == "..") {
        bad("is not written plainly (no \"//\", \".\" or \"..\"): write it plainly");
        continue;
      }
      if (path.find_first_of("*?[") < last) {
        bad("has a wildcard in a directory: only its last component may have one");
        continue;
      }
      parsed.spec.netns_allow.paths.push_back(path);
      parsed.netns_path_pos.push_back(at(element->source()));
    }
  }

  // netns_owner and netns_path say where a netns = "request" socket may be
  // bound; without either, wherever the requester points but the broker's own.
  void check_netns(const SocketSpec& spec, const SeenKeys& seen) {
    if (spec.netns != NetnsMode::request) {
      for (std::size_t key : {socket_key("netns_owner"), socket_key("netns_path")}) {
        if (const auto* it = seen.find(key); it != nullptr) {
          reporter_.error(at(it->key), std::string(kSocketKeys[key]) + " applies only to netns = \"request\" sockets");
        }
      }
      return;
    }
    if (spec.netns_allow.restricted() || seen.find(socket_key("netns_owner")) != nullptr ||
        seen.find(socket_key("netns_path")) != nullptr) {
      return;
    }
    const auto* it = seen.find(socket_key("netns"));
    reporter_.warning(at(it->value),
                      "netns = \"request\" binds in any network namespace the requester can open but the broker's "
                      "own, another container's /run/netns/NAME (readable by everyone) included: restrict it with "
                      "netns_owner = \"requester\" or netns_path");
  }

  // Options that only some kinds of address can take.
  void check_address_fit(ParsedSocket& parsed, const SeenKeys& seen) {
    const SocketSpec& spec = parsed.spec;
    const Address& address = spec.listen;
    // Quoted only for a message: most sockets have none to make.
    const auto listen = [&] { return sockbroker::quoted(address.text); };

    if (address.kind == Address::Kind::unix_abstract && !spec.allow_abstract) {
      // Abstract names have no file permissions: any process in the network
      // namespace can connect, so the operator must opt in.
      reporter_.error(parsed.listen_pos,
                      "abstract address " + listen() + " needs allow_abstract = true in " + socket_header(spec.name));
    }
    if (address.kind != Address::Kind::unix_path) {
      for (std::size_t key : {socket_key("socket_user"), socket_key("socket_group"), socket_key("socket_mode")}) {
        if (const auto* it = seen.find(key); it != nullptr) {
          reporter_.error(at(it->key),
                          std::string(kSocketKeys[key]) + " applies only to Unix socket paths, not " + listen());
        }
      }
    }
    if (address.is_unix()) {
      if (const auto* it = seen.find(socket_key("reuse_port")); it != nullptr && spec.reuse_port) {
        reporter_.error(at(it->key), "reuse_port does not apply to Unix sockets");
      }
      const std::pair<std::size_t, bool> ip_only[] = {
          {socket_key("bind_to_device"), spec.bind_to_device.has_value()},
          {socket_key("free_bind"), spec.free_bind},
          {socket_key("transparent"), spec.transparent},
      };
      for (const auto& [key, set] : ip_only) {
        const auto* it = seen.find(key);
        if (set && it != nullptr) {
          reporter_.error(at(it->key), std::string(kSocketKeys[key]) + " applies only to IP sockets, not " + listen());
        }
      }
    }
    if (const auto* it = seen.find(socket_key("fast_open")); it != nullptr && spec.fast_open > 0) {
      if (address.is_unix() || spec.type != SocketType::stream) {
        reporter_.error(at(it->key), "fast_open applies only to TCP (type = \"stream\" on an IP address)");
      }
    }
    if (const auto* it = seen.find(socket_key("v6only")); it != nullptr && address.kind != Address::Kind::inet6) {
      reporter_.warning(at(it->key), "v6only applies only to IPv6 addresses; it is ignored for " + listen());
    }
    if (address.is_wildcard()) {
      reporter_.warning(parsed.listen_pos,
                        "listen " + listen() + " listens on every interface; name the address it should serve");
    }
    // Servers disagree on what binding "[::]" means (nginx: IPv6 only; Go,
    // Node, Python: both families), and a default chosen silently is right
    // for one kind and leaves the other without IPv4.
    if (address.kind == Address::Kind::inet6 && address.is_wildcard() &&
        seen.find(socket_key("v6only")) == nullptr) {
      reporter_.warning(parsed.listen_pos, "listen " + listen() + " takes IPv6 only (v6only = true), as nginx's listen " +
                                               address.text + " does; Go, Node and Python bind [::] for IPv4 too and "
                                               "need v6only = false: write v6only either way");
    }
  }

  // Settings that are valid but weaken the socket or will not do what they say.
  void check_options(const SocketSpec& spec, const SeenKeys& seen) {
    if (const auto* it = seen.find(socket_key("backlog")); it != nullptr && spec.type == SocketType::datagram) {
      reporter_.warning(at(it->key), "backlog is ignored for datagram sockets");
    }
    if (const auto* it = seen.find(socket_key("max_grants")); it != nullptr && spec.max_grants != 0 &&
        spec.netns == NetnsMode::request) {
      reporter_.warning(at(it->key),
                        "max_grants is ignored for netns = \"request\" sockets: the broker keeps no reference to them "
                        "and cannot see when they are closed");
    }
    if (const auto* it = seen.find(socket_key("fast_open")); it != nullptr && spec.fast_open > 0) {
      reporter_.warning(at(it->value), "fast_open = " + std::to_string(spec.fast_open) +
                                              " enables TCP Fast Open: data in a SYN reaches the service before "
                                              "the handshake completes and can be replayed");
    }
    if (const auto* it = seen.find(socket_key("free_bind")); it != nullptr && spec.free_bind) {
      reporter_.warning(at(it->value), "free_bind = true lets the socket bind an address the host does not have");
    }
    if (const auto* it = seen.find(socket_key("transparent")); it != nullptr && spec.transparent) {
      reporter_.warning(at(it->value),
                        "transparent = true lets the socket accept traffic addressed to other hosts (TPROXY)");
    }
    check_buffer(seen, socket_key("receive_buffer"), spec.receive_buffer, limits_.rmem_max, "net.core.rmem_max");
    check_buffer(seen, socket_key("send_buffer"), spec.send_buffer, limits_.wmem_max, "net.core.wmem_max");
  }

  void check_buffer(const SeenKeys& seen, std::size_t key, const std::optional<int>& size,
                    const std::optional<long>& limit, const char* sysctl) {
    const auto* it = seen.find(key);
    if (it == nullptr || !size || !limit || *size <= *limit) return;
    reporter_.warning(at(it->value), std::string(kSocketKeys[key]) + " = " + std::to_string(*size) + " exceeds " +
                                         sysctl + "; the kernel will clamp it to " + std::to_string(*limit));
  }

  void read_rules(const std::string& socket, const toml::node& node, SocketSpec& spec) {
    const auto* array = node.as_array();
    if (array == nullptr) {
      reporter_.error(at(node.source()),
                      "allow must be an array of tables (write " + rule_header(socket) + "), not " + type_name(node));
      return;
    }
    for (const toml::node& element : *array) {
      const auto* table = element.as_table();
      if (table == nullptr) {
        reporter_.error(at(element.source()),
                        "an allow rule must be a table (" + rule_header(socket) + "), not " + type_name(element));
        continue;
      }
      spec.allow.push_back(read_rule(socket, *table));
    }
  }

  Rule read_rule(const std::string& socket, const toml::table& table) {
    Rule rule;
    rule.where = at(table.source());
    if (table.empty()) {
      reporter_.error(rule.where, "empty allow rule matches everyone; write the fields it must match");
      return rule;
    }
    for (auto&& [key, value] : table) {
      const std::string field(key.str());
      if (field == "user") {
        rule.user = user(field, value);
      } else if (field == "group") {
        rule.group = group(field, value);
      } else if (field == "unit") {
        if (const std::string* text = string(field, value)) {
          if (!has_unit_suffix(*text)) {
            reporter_.error(at(value.source()), "unit " + sockbroker::quoted(*text) +
                                                    " is not a systemd unit name (it needs a suffix such as "
                                                    "\".service\" or \".scope\")");
          } else if (!valid_unit_chars(*text) || text->size() > 255) {
            reporter_.error(at(value.source()), "unit " + sockbroker::quoted(*text) + " is not a valid systemd unit name");
          } else {
            rule.unit = *text;
          }
        }
      } else if (field == "executable") {
        if (const std::string* text = string(field, value)) {
          if (text->empty() || text->front() != '/') {
            reporter_.error(at(value.source()), "executable " + sockbroker::quoted(*text) + " must be an absolute path");
          } else if (text->back() == '/' || text->find('\0') != std::string::npos || text->size() >= PATH_MAX) {
            reporter_.error(at(value.source()), "executable " + sockbroker::quoted(*text) + " is not a file path");
          } else {
            rule.executable = *text;
          }
        }
      } else if (field == "cgroup") {
        if (const std::string* text = string(field, value)) {
          if (text->empty() || text->front() != '/') {
            reporter_.error(at(value.source()),
                            "cgroup " + sockbroker::quoted(*text) + " must be an absolute cgroup path such as \"/system.slice\"");
          } else {
            // "/system.slice/" means the same subtree as "/system.slice"; the
            // matcher works on the form without the trailing slash.
            std::string prefix = *text;
            while (prefix.size() > 1 && prefix.back() == '/') prefix.pop_back();
            rule.cgroup = std::move(prefix);
          }
        }
      } else {
        unknown_key(key, "in " + rule_header(socket), kRuleKeys);
      }
    }
    return rule;
  }

  const std::string& file_;
  const HostLimits& limits_;
  Reporter& reporter_;
};

}  // namespace

void Reporter::error(SourcePos where, std::string message) {
  ++errors_;
  // The one place every message passes: whatever it quotes, it stays one line.
  diagnostics_.push_back(Diagnostic{Diagnostic::Severity::error, std::move(where), printable(message)});
}

void Reporter::warning(SourcePos where, std::string message) {
  if (strict_) {
    error(std::move(where), std::move(message));
    return;
  }
  diagnostics_.push_back(Diagnostic{Diagnostic::Severity::warning, std::move(where), printable(message)});
}

std::vector<Diagnostic> Reporter::take_sorted(const std::vector<std::string>& file_order) {
  auto rank = [&](const Diagnostic& d) {
    auto it = std::find(file_order.begin(), file_order.end(), d.where.file);
    return std::tuple(static_cast<std::size_t>(it - file_order.begin()), d.where.line, d.where.column);
  };
  std::stable_sort(diagnostics_.begin(), diagnostics_.end(),
                   [&](const Diagnostic& a, const Diagnostic& b) { return rank(a) < rank(b); });
  errors_ = 0;
  return std::move(diagnostics_);
}

ParsedDocument read_document(const toml::table& root, const std::string& file, const HostLimits& limits,
                             Reporter& reporter) {
  return DocumentReader(file, limits, reporter).read(root);
}

std::string to_string(const SourcePos& where) {
  return where.file + ":" + std::to_string(where.line) + ":" + std::to_string(where.column);
}

}  // namespace sockbroker::policy::detail
