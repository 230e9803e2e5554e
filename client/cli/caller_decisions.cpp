#include "caller_decisions.hpp"

#include <grp.h>
#include <pwd.h>

#include <algorithm>
#include <charconv>
#include <sstream>

#include <sockbroker/client.h>

#include "exit_codes.hpp"
#include "printable.hpp"
#include "socket_type.hpp"
#include "table.hpp"

namespace sockbroker::cli {
namespace {

std::optional<std::uint32_t> number(std::string_view text) {
  std::uint32_t value = 0;
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

struct Account {
  std::string name;
  uid_t uid;
  gid_t gid;
};

// One NSS lookup (getpwnam_r and kin), its buffer grown on ERANGE: LDAP
// entries can be large. `copy` takes what is needed while the buffer lives.
template <typename Entry, typename Out, typename Call, typename Copy>
std::optional<Out> nss_lookup(Call&& call, Copy&& copy) {
  std::vector<char> buffer(4096);
  Entry entry{};
  Entry* found = nullptr;
  int err = 0;
  while ((err = call(&entry, buffer.data(), buffer.size(), &found)) == ERANGE && buffer.size() < (1U << 20)) {
    buffer.resize(buffer.size() * 2);
  }
  if (err != 0 || found == nullptr) return std::nullopt;
  return copy(*found);
}

Account account_of(const passwd& pw) { return Account{pw.pw_name, pw.pw_uid, pw.pw_gid}; }

std::optional<Account> user_named(const std::string& name) {
  return nss_lookup<passwd, Account>(
      [&](passwd* e, char* b, std::size_t n, passwd** f) { return ::getpwnam_r(name.c_str(), e, b, n, f); }, account_of);
}

std::optional<Account> user_with_id(uid_t uid) {
  return nss_lookup<passwd, Account>(
      [&](passwd* e, char* b, std::size_t n, passwd** f) { return ::getpwuid_r(uid, e, b, n, f); }, account_of);
}

std::optional<gid_t> group_named(const std::string& name) {
  return nss_lookup<group, gid_t>(
      [&](group* e, char* b, std::size_t n, group** f) { return ::getgrnam_r(name.c_str(), e, b, n, f); },
      [](const group& gr) { return gr.gr_gid; });
}

std::optional<std::string> group_name(gid_t gid) {
  return nss_lookup<group, std::string>(
      [&](group* e, char* b, std::size_t n, group** f) { return ::getgrgid_r(gid, e, b, n, f); },
      [](const group& gr) { return std::string(gr.gr_name); });
}

Result<gid_t> gid_of(const std::string& text) {
  if (auto id = number(text)) return static_cast<gid_t>(*id);
  if (auto gid = group_named(text)) return *gid;
  return Error{SOCKBROKER_E_INVALID, 0, "no group " + sockbroker::quoted(text)};
}

std::string user_text(uid_t uid) {
  auto account = user_with_id(uid);
  return "uid " + std::to_string(uid) + (account ? " (" + sockbroker::printable(account->name) + ")" : "");
}

std::string group_text(gid_t gid) {
  auto name = group_name(gid);
  return std::to_string(gid) + (name ? " (" + sockbroker::printable(*name) + ")" : "");
}

std::string groups_text(const std::vector<gid_t>& groups) {
  if (groups.empty()) return "none";
  std::string out;
  for (gid_t g : groups) out += (out.empty() ? "" : ", ") + group_text(g);
  return out;
}

std::string known_or(const std::optional<std::string>& value, const char* option) {
  return value ? "is " + sockbroker::quoted(*value) : std::string("is not known (give ") + option + ")";
}

std::string why_not(const policy::Rule& rule, policy::Mismatch mismatch, const policy::PeerIdentity& peer) {
  using policy::Mismatch;
  switch (mismatch) {
    case Mismatch::none:
      return "";
    case Mismatch::user:
      return "needs " + user_text(*rule.user) + "; the caller is " + user_text(peer.uid);
    case Mismatch::group:
      return "needs group " + group_text(*rule.group) + "; the caller's gid is " + group_text(peer.gid) +
             ", its groups " + groups_text(peer.groups);
    case Mismatch::unit:
      return "needs unit " + sockbroker::quoted(*rule.unit) + "; the caller's unit " + known_or(peer.unit, "--unit");
    case Mismatch::executable:
      return "needs executable " + sockbroker::quoted(*rule.executable) + "; the caller's executable " +
             known_or(peer.executable, "--executable");
    case Mismatch::cgroup:
      return "needs a cgroup under " + sockbroker::quoted(*rule.cgroup) + "; the caller's cgroup " +
             known_or(peer.cgroup, "--cgroup");
    case Mismatch::empty:
      return "has no condition, so it matches no one";
  }
  return "";
}

std::string where_text(const policy::SourcePos& where) {
  return where.file + ":" + std::to_string(where.line) + ":" + std::to_string(where.column);
}

const char* mismatch_name(policy::Mismatch mismatch) {
  using policy::Mismatch;
  switch (mismatch) {
    case Mismatch::none: return "none";
    case Mismatch::user: return "user";
    case Mismatch::group: return "group";
    case Mismatch::unit: return "unit";
    case Mismatch::executable: return "executable";
    case Mismatch::cgroup: return "cgroup";
    case Mismatch::empty: return "empty";
  }
  return "none";
}

std::string granted_by(const SocketDecision& d) {
  if (d.rule < 0) return "root gets every socket";
  return "rule " + std::to_string(d.rule + 1) + ", " + where_text(d.socket->allow[static_cast<std::size_t>(d.rule)].where);
}

}  // namespace

Result<policy::PeerIdentity> caller_from(const CallerSpec& spec) {
  const auto colon = spec.as.find(':');
  const std::string user = spec.as.substr(0, colon);
  std::optional<Account> account;
  policy::PeerIdentity peer;
  if (auto id = number(user)) {
    account = user_with_id(static_cast<uid_t>(*id));
    peer.uid = static_cast<uid_t>(*id);
  } else {
    account = user_named(user);
    if (!account) return Error{SOCKBROKER_E_INVALID, 0, "--as: no user " + sockbroker::quoted(user)};
    peer.uid = account->uid;
  }
  if (colon != std::string::npos) {
    auto gid = gid_of(spec.as.substr(colon + 1));
    if (!gid) return Error{SOCKBROKER_E_INVALID, 0, "--as: " + gid.error().message};
    peer.gid = *gid;
  } else if (account) {
    peer.gid = account->gid;
  } else {
    return Error{SOCKBROKER_E_INVALID, 0,
                 "--as: uid " + user + " has no account; give its primary group (--as " + user + ":GROUP)"};
  }
  if (account) {
    // What initgroups(3) gives a process started as the account (systemd's
    // User=, su, login): the NSS groups it is a member of, and its gid.
    int count = 64;
    std::vector<gid_t> groups(static_cast<std::size_t>(count));
    while (::getgrouplist(account->name.c_str(), peer.gid, groups.data(), &count) < 0) {
      groups.resize(static_cast<std::size_t>(count));
    }
    groups.resize(static_cast<std::size_t>(count));
    peer.groups = std::move(groups);
  }
  for (const auto& g : spec.groups) {
    auto gid = gid_of(g);
    if (!gid) return Error{SOCKBROKER_E_INVALID, 0, "--group: " + gid.error().message};
    if (std::find(peer.groups.begin(), peer.groups.end(), *gid) == peer.groups.end()) peer.groups.push_back(*gid);
  }
  peer.unit = spec.unit;
  peer.executable = spec.executable;
  peer.cgroup = spec.cgroup;
  return peer;
}

std::vector<SocketDecision> decide_for(const policy::Policy& policy, const policy::PeerIdentity& peer,
                                       const std::vector<std::string>& names) {
  std::vector<std::string> wanted = names;
  if (wanted.empty()) {
    for (const auto& socket : policy.sockets) wanted.push_back(socket.name);
  }
  std::vector<SocketDecision> out;
  for (const auto& name : wanted) {
    const auto decision = policy::decide(policy, peer, name);
    SocketDecision d{name, decision.socket, decision.outcome == policy::Decision::Outcome::grant, decision.rule, {}};
    if (d.socket != nullptr && !d.granted) {
      for (const auto& rule : d.socket->allow) {
        const auto mismatch = policy::first_mismatch(rule, peer);
        d.rules.push_back({&rule, mismatch, why_not(rule, mismatch, peer)});
      }
    }
    out.push_back(std::move(d));
  }
  return out;
}

std::string describe_caller(const policy::PeerIdentity& peer) {
  std::string out = user_text(peer.uid) + ", gid " + group_text(peer.gid) + ", groups " + groups_text(peer.groups);
  out += ", unit " + (peer.unit ? sockbroker::quoted(*peer.unit) : std::string("unknown"));
  out += ", executable " + (peer.executable ? sockbroker::quoted(*peer.executable) : std::string("unknown"));
  out += ", cgroup " + (peer.cgroup ? sockbroker::quoted(*peer.cgroup) : std::string("unknown"));
  return out;
}

std::string describe_administrator(const policy::BrokerSettings& broker, const policy::PeerIdentity& peer) {
  const bool admin = policy::is_admin(broker, peer);
  const std::string why = peer.uid == 0          ? "root"
                          : !broker.admin_group ? "the policy sets no admin_group"
                          : admin               ? "in admin_group " + group_text(*broker.admin_group)
                                                : "not in admin_group " + group_text(*broker.admin_group);
  return std::string("administrator (status, reload, revoke, upgrade): ") + (admin ? "yes" : "no") + " (" + why + ")";
}

std::string format_decisions(const std::vector<SocketDecision>& decisions) {
  std::vector<TableRow> table{{"SOCKET", "TYPE", "ADDRESS", "DECISION", "BY"}};
  std::ostringstream details;
  for (const auto& d : decisions) {
    if (d.socket == nullptr) {
      table.push_back({d.name, "-", "-", "unknown", "the policy has no such socket"});
      continue;
    }
    const std::string type = to_string(d.socket->type);
    if (d.granted) {
      table.push_back({d.name, type, d.socket->listen.text, "granted", granted_by(d)});
      continue;
    }
    table.push_back({d.name, type, d.socket->listen.text, "denied",
                     d.rules.empty() ? "no allow rule: root's alone" : "no rule matches"});
    for (std::size_t i = 0; i < d.rules.size(); ++i) {
      details << d.name << ": rule " << i + 1 << " (" << where_text(d.rules[i].rule->where) << ") "
              << d.rules[i].why << '\n';
    }
  }
  std::string text = format_table(table);
  if (!details.str().empty()) text += '\n' + details.str();
  return text;
}

nlohmann::json caller_json(const policy::PeerIdentity& peer) {
  auto optional = [](const std::optional<std::string>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
  return {{"uid", peer.uid},       {"gid", peer.gid},
          {"groups", peer.groups}, {"unit", optional(peer.unit)},
          {"executable", optional(peer.executable)}, {"cgroup", optional(peer.cgroup)}};
}

nlohmann::json decisions_json(const std::vector<SocketDecision>& decisions) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& d : decisions) {
    auto position = [](const policy::Rule& rule, std::size_t index) {
      return nlohmann::json{
          {"index", index + 1}, {"file", rule.where.file}, {"line", rule.where.line}, {"column", rule.where.column}};
    };
    nlohmann::json entry{{"name", d.name},
                         {"exists", d.socket != nullptr},
                         {"decision", d.socket == nullptr ? "unknown_socket" : d.granted ? "grant" : "no_rule_matched"},
                         {"rule", nullptr},
                         {"rules", nlohmann::json::array()}};
    if (d.socket != nullptr) {
      entry["type"] = to_string(d.socket->type);
      entry["address"] = d.socket->listen.text;
    }
    if (d.granted && d.rule >= 0) {
      entry["rule"] = position(d.socket->allow[static_cast<std::size_t>(d.rule)], static_cast<std::size_t>(d.rule));
    }
    for (std::size_t i = 0; i < d.rules.size(); ++i) {
      auto rule = position(*d.rules[i].rule, i);
      rule["fails_on"] = mismatch_name(d.rules[i].mismatch);
      rule["why"] = d.rules[i].why;
      entry["rules"].push_back(std::move(rule));
    }
    out.push_back(std::move(entry));
  }
  return out;
}

int decisions_exit_code(const std::vector<SocketDecision>& decisions) {
  const bool unknown = std::any_of(decisions.begin(), decisions.end(), [](const auto& d) { return d.socket == nullptr; });
  if (unknown) return kExitUnknown;
  const bool denied = std::any_of(decisions.begin(), decisions.end(), [](const auto& d) { return !d.granted; });
  return denied ? kExitDenied : kExitOk;
}

}  // namespace sockbroker::cli
