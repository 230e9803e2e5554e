// The policy loader: every mistake an operator can make, reported as the exact
// "FILE:LINE:COL: error: message" line `sockbroker check` prints.
#include <netinet/in.h>
#include <stdlib.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../integration/require_root.hpp"
#include "loader.hpp"

namespace sockbroker::policy {
namespace {

using Lines = std::vector<std::string>;

Lines format_all(const LoadResult& result) {
  Lines out;
  for (const Diagnostic& d : result.diagnostics) out.push_back(d.format());
  return out;
}

// All diagnostics for one document named "t.toml".
Lines check(std::string_view text, LoadOptions options = {}) {
  LoadResult result = load_policy_text(text, "t.toml", options);
  EXPECT_EQ(result.policy.has_value(), !has_errors(result.diagnostics));
  return format_all(result);
}

// A valid policy whose only diagnostics are exactly `warnings`.
Policy load_with_warnings(std::string_view text, const Lines& warnings) {
  LoadResult result = load_policy_text(text, "t.toml");
  EXPECT_TRUE(result.policy.has_value()) << testing::PrintToString(format_all(result));
  EXPECT_EQ(format_all(result), warnings);
  return result.policy ? *result.policy : Policy{};
}

Policy load_ok(std::string_view text) {
  LoadResult result = load_policy_text(text, "t.toml");
  EXPECT_TRUE(result.policy.has_value()) << testing::PrintToString(format_all(result));
  EXPECT_TRUE(result.diagnostics.empty()) << testing::PrintToString(format_all(result));
  return result.policy ? *result.policy : Policy{};
}

long read_proc_long(const char* path) {
  std::ifstream in(path);
  long value = -1;
  in >> value;
  return value;
}

// ---------------------------------------------------------------------------
// Valid policies

TEST(PolicyLoader, FullSocketAndBrokerAreRead) {
  Policy p = load_with_warnings(R"([broker]
admin_group = "daemon"
control_mode = "0660"
max_clients = 100
max_clients_per_uid = 7
request_timeout_ms = 1500

[socket.web]
listen = "127.0.0.1:8080"
type = "stream"
reuse_port = true
max_grants = 8
backlog = 128
bind_to_device = "lo"
netns = "request"
netns_owner = ["requester", "www-data", 1234]
netns_path = "/run/netns/ctr-*"

[[socket.web.allow]]
user = "www-data"
unit = "nginx.service"

[[socket.web.allow]]
group = "nogroup"

[[socket.web.allow]]
user = 1234
group = 33
executable = "/usr/sbin/nginx"
cgroup = "/system.slice/"

[socket.app]
listen = "/run/app.sock"
type = "seqpacket"
socket_user = "www-data"
socket_group = 1
socket_mode = "0640"
receive_buffer = 65536
send_buffer = 65536
)",
                                 // Every key is read; this pair is legal but says something useless.
                                 Lines{"t.toml:12:1: warning: max_grants is ignored for netns = \"request\" sockets: "
                                       "the broker keeps no reference to them and cannot see when they are closed"});
  EXPECT_EQ(p.broker.admin_group, std::optional<gid_t>(1));
  EXPECT_EQ(p.broker.control_mode, 0660u);
  EXPECT_EQ(p.broker.max_clients, 100u);
  EXPECT_EQ(p.broker.max_clients_per_uid, 7u);
  EXPECT_EQ(p.broker.request_timeout_ms, 1500u);
  EXPECT_EQ(p.files, Lines{"t.toml"});

  ASSERT_EQ(p.sockets.size(), 2u);
  EXPECT_EQ(p.sockets[0].name, "app");  // sorted by name
  EXPECT_EQ(p.sockets[1].name, "web");

  const SocketSpec& web = *p.find("web");
  EXPECT_EQ(web.listen.text, "127.0.0.1:8080");
  EXPECT_EQ(web.type, SocketType::stream);
  EXPECT_TRUE(web.reuse_port);
  EXPECT_EQ(web.max_grants, 8u);
  EXPECT_EQ(web.backlog, 128);
  EXPECT_EQ(web.bind_to_device, std::optional<std::string>("lo"));
  EXPECT_EQ(web.netns, NetnsMode::request);
  EXPECT_TRUE(web.netns_allow.owned_by_requester);
  EXPECT_EQ(web.netns_allow.owners, (std::vector<uid_t>{33, 1234}));
  EXPECT_EQ(web.netns_allow.paths, Lines{"/run/netns/ctr-*"});
  EXPECT_EQ(web.where.line, 8);
  EXPECT_EQ(web.where.file, "t.toml");
  EXPECT_EQ(web.where.column, 1);
  ASSERT_EQ(web.allow.size(), 3u);
  EXPECT_EQ(web.allow[0].user, std::optional<uid_t>(33));
  EXPECT_EQ(web.allow[0].unit, std::optional<std::string>("nginx.service"));
  EXPECT_FALSE(web.allow[0].group);
  EXPECT_EQ(web.allow[0].where.line, 19);
  EXPECT_EQ(web.allow[1].group, std::optional<gid_t>(65534));
  EXPECT_EQ(web.allow[2].user, std::optional<uid_t>(1234));  // a uid needs no passwd entry
  EXPECT_EQ(web.allow[2].group, std::optional<gid_t>(33));
  EXPECT_EQ(web.allow[2].executable, std::optional<std::string>("/usr/sbin/nginx"));
  EXPECT_EQ(web.allow[2].cgroup, std::optional<std::string>("/system.slice"));

  const SocketSpec& app = *p.find("app");
  EXPECT_EQ(app.listen.kind, Address::Kind::unix_path);
  EXPECT_EQ(app.type, SocketType::seqpacket);
  EXPECT_EQ(app.socket_user, std::optional<uid_t>(33));
  EXPECT_EQ(app.socket_group, std::optional<gid_t>(1));
  EXPECT_EQ(app.socket_mode, std::optional<mode_t>(0640));
  EXPECT_EQ(app.receive_buffer, std::optional<int>(65536));
  EXPECT_EQ(app.send_buffer, std::optional<int>(65536));
  EXPECT_TRUE(app.allow.empty());  // root only: documented, not a warning
}

TEST(PolicyLoader, DefaultsApply) {
  Policy p = load_ok(R"([socket.s]
listen = "127.0.0.1:9000"
)");
  EXPECT_FALSE(p.broker.admin_group);
  EXPECT_EQ(p.broker.control_mode, 0666u);
  EXPECT_EQ(p.broker.max_clients, 1024u);
  EXPECT_EQ(p.broker.max_clients_per_uid, 64u);
  EXPECT_EQ(p.broker.request_timeout_ms, 2000u);
  const SocketSpec& s = p.sockets.at(0);
  EXPECT_EQ(s.type, SocketType::stream);
  EXPECT_FALSE(s.reuse_port);
  EXPECT_EQ(s.max_grants, 0u);
  EXPECT_EQ(s.backlog, 511);
  EXPECT_TRUE(s.v6only);
  EXPECT_EQ(s.fast_open, 0);
  EXPECT_EQ(s.netns, NetnsMode::broker);
}

TEST(PolicyLoader, EmptyDocumentIsAnEmptyPolicy) {
  Policy p = load_ok("# nothing yet\n");
  EXPECT_TRUE(p.sockets.empty());
}

TEST(PolicyLoader, AbstractWithAllowAbstract) {
  Policy p = load_ok(R"([socket.a]
listen = "@demo"
allow_abstract = true
)");
  EXPECT_EQ(p.sockets.at(0).listen.kind, Address::Kind::unix_abstract);
  EXPECT_TRUE(p.sockets.at(0).allow_abstract);
}

TEST(PolicyLoader, NumericStringIdsAreIdsWhenNoAccountHasThatName) {
  Policy p = load_ok(R"([socket.s]
listen = "127.0.0.1:9000"
[[socket.s.allow]]
user = "4000"
group = "4001"
)");
  EXPECT_EQ(p.sockets.at(0).allow.at(0).user, std::optional<uid_t>(4000));
  EXPECT_EQ(p.sockets.at(0).allow.at(0).group, std::optional<gid_t>(4001));
}

TEST(PolicyLoader, DemoExampleLoads) {
  LoadResult result = load_policy({SOCKBROKER_EXAMPLES_DIR "/demo.toml"});
  ASSERT_TRUE(result.policy.has_value()) << testing::PrintToString(format_all(result));
  EXPECT_FALSE(has_errors(result.diagnostics));
  const std::string file = SOCKBROKER_EXAMPLES_DIR "/demo.toml";
  for (const Diagnostic& d : result.diagnostics) {
    EXPECT_NE(d.message.find("listens on every interface"), std::string::npos) << d.format();
  }
  const Policy& p = *result.policy;
  EXPECT_EQ(p.files, Lines{file});
  ASSERT_EQ(p.sockets.size(), 4u);
  EXPECT_EQ(p.sockets[0].name, "admin-api");
  EXPECT_EQ(p.sockets[1].name, "control-unix");
  EXPECT_EQ(p.sockets[2].name, "dns");
  EXPECT_EQ(p.sockets[3].name, "web");

  const SocketSpec& web = *p.find("web");
  EXPECT_EQ(web.listen.text, "0.0.0.0:80");
  EXPECT_EQ(web.type, SocketType::stream);
  ASSERT_EQ(web.allow.size(), 1u);
  EXPECT_EQ(web.allow[0].user, std::optional<uid_t>(65534));

  const SocketSpec& dns = *p.find("dns");
  EXPECT_EQ(dns.listen.text, "0.0.0.0:53");
  EXPECT_EQ(dns.type, SocketType::datagram);
  ASSERT_EQ(dns.allow.size(), 1u);
  EXPECT_EQ(dns.allow[0].group, std::optional<gid_t>(65534));

  const SocketSpec& api = *p.find("admin-api");
  EXPECT_EQ(api.listen.text, "127.0.0.1:8443");
  ASSERT_EQ(api.allow.size(), 1u);
  EXPECT_EQ(api.allow[0].user, std::optional<uid_t>(33));

  const SocketSpec& unix_socket = *p.find("control-unix");
  EXPECT_EQ(unix_socket.listen.text, "/run/sockbroker-demo/app.sock");
  EXPECT_EQ(unix_socket.socket_mode, std::optional<mode_t>(0660));
  ASSERT_EQ(unix_socket.allow.size(), 1u);
  EXPECT_EQ(unix_socket.allow[0].user, std::optional<uid_t>(65534));

  EXPECT_EQ(p.broker.control_mode, 0666u);
  EXPECT_EQ(p.broker.max_clients, 1024u);
  EXPECT_EQ(p.broker.max_clients_per_uid, 64u);
  EXPECT_EQ(p.broker.request_timeout_ms, 2000u);
}

TEST(PolicyLoader, DemoExampleFailsOnlyOnWildcardsUnderStrict) {
  LoadOptions strict;
  strict.strict = true;
  LoadResult result = load_policy({SOCKBROKER_EXAMPLES_DIR "/demo.toml"}, strict);
  EXPECT_FALSE(result.policy.has_value());
  ASSERT_EQ(result.diagnostics.size(), 2u);
  for (const Diagnostic& d : result.diagnostics) {
    EXPECT_EQ(d.severity, Diagnostic::Severity::error);
    EXPECT_NE(d.message.find("listens on every interface"), std::string::npos) << d.format();
  }
}

// ---------------------------------------------------------------------------
// Mistakes: one test each, the exact line an operator sees.

TEST(PolicyMistake, TomlSyntaxError) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\" x\n"),
            (Lines{"t.toml:2:25: error: unexpected \"x\" after the value of listen (a comment starts with \"#\")"}));
}

// toml++ 3.3 breaks its own parse_key() precondition on these headers (an
// abort where assertions are compiled in, as in the sanitizer build); its
// report of them, in the loader's words, is what an operator must see
// (policy/toml_include.hpp).
TEST(PolicyMistake, TableHeaderThatCannotStartAKey) {
  EXPECT_EQ(check("[<socket.web]\nlisten = \"127.0.0.1:80\"\n"),
            (Lines{"t.toml:1:2: error: unexpected \"<\" in the table header [<socket.web]; a socket is [socket.NAME], "
                   "a rule [[socket.NAME.allow]]"}));
  EXPECT_EQ(check("[[[socket.web]]]\nlisten = \"127.0.0.1:80\"\n"),
            (Lines{"t.toml:1:3: error: unexpected \"[\" in the table header [[[socket.web]]]; a socket is "
                   "[socket.NAME], a rule [[socket.NAME.allow]]"}));
}

// The same, in parse_array() on a '}' where a value should be.
TEST(PolicyMistake, ClosingBraceInAnArray) {
  EXPECT_EQ(check("[socket.web]\nlisten = [}\n"), (Lines{"t.toml:2:11: error: unexpected \"}\" where a value should be"}));
}

TEST(PolicyMistake, SameKeyTwiceInOneFile) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nlisten = \"127.0.0.1:81\"\n"),
            (Lines{"t.toml:3:1: error: listen is set twice in [socket.web]; the first is at t.toml:2:1"}));
}

TEST(PolicyMistake, UnknownTopLevelKeyWithSuggestion) {
  EXPECT_EQ(check("[sockets.web]\nlisten = \"127.0.0.1:80\"\n"),
            (Lines{"t.toml:1:2: error: unknown key \"sockets\" at the top level (did you mean \"socket\"?)"}));
}

TEST(PolicyMistake, UnknownTopLevelKeyWithoutSuggestion) {
  EXPECT_EQ(check("listen = \"127.0.0.1:80\"\n"),
            (Lines{"t.toml:1:1: error: unknown key \"listen\" at the top level"}));
}

TEST(PolicyMistake, UnknownBrokerKey) {
  EXPECT_EQ(check("[broker]\nmax_client = 5\n"),
            (Lines{"t.toml:2:1: error: unknown key \"max_client\" in [broker] (did you mean \"max_clients\"?)"}));
}

TEST(PolicyMistake, BrokerIsNotATable) {
  EXPECT_EQ(check("broker = 1\n"), (Lines{"t.toml:1:10: error: broker must be a table ([broker]), not an integer"}));
}

TEST(PolicyMistake, MaxClientsWrongType) {
  EXPECT_EQ(check("[broker]\nmax_clients = \"1024\"\n"),
            (Lines{"t.toml:2:15: error: max_clients must be an integer, not a string"}));
}

TEST(PolicyMistake, MaxClientsFloat) {
  EXPECT_EQ(check("[broker]\nmax_clients = 10.5\n"),
            (Lines{"t.toml:2:15: error: max_clients must be an integer, not a floating-point number"}));
}

TEST(PolicyMistake, MaxClientsZero) {
  EXPECT_EQ(check("[broker]\nmax_clients = 0\n"),
            (Lines{"t.toml:2:15: error: max_clients = 0 is out of range 1..4294967295"}));
}

TEST(PolicyMistake, MaxClientsPerUidZero) {
  EXPECT_EQ(check("[broker]\nmax_clients_per_uid = 0\n"),
            (Lines{"t.toml:2:23: error: max_clients_per_uid = 0 is out of range 1..4294967295"}));
}

TEST(PolicyMistake, RequestTimeoutTooLarge) {
  EXPECT_EQ(check("[broker]\nrequest_timeout_ms = 4294967296\n"),
            (Lines{"t.toml:2:22: error: request_timeout_ms = 4294967296 is out of range 1..4294967295"}));
}

TEST(PolicyMistake, RequestTimeoutNegative) {
  EXPECT_EQ(check("[broker]\nrequest_timeout_ms = -5\n"),
            (Lines{"t.toml:2:22: error: request_timeout_ms = -5 is out of range 1..4294967295"}));
}

TEST(PolicyLoader, AuditSettingsDefaultToDenyAndAPerUidLimit) {
  Policy p = load_ok("[socket.s]\nlisten = \"127.0.0.1:9000\"\n");
  EXPECT_EQ(p.broker.audit_failure, AuditFailure::deny);
  EXPECT_STREQ(to_string(p.broker.audit_failure), "deny");
  EXPECT_EQ(p.broker.audit_rate_per_uid, 10u);
  EXPECT_EQ(p.broker.audit_burst_per_uid, 100u);
}

TEST(PolicyLoader, AuditSettingsAreRead) {
  Policy keep = load_ok("[broker]\naudit_failure = \"continue\"\naudit_rate_per_uid = 0\naudit_burst_per_uid = 5\n");
  EXPECT_EQ(keep.broker.audit_failure, AuditFailure::keep_granting);
  EXPECT_STREQ(to_string(keep.broker.audit_failure), "continue");
  EXPECT_EQ(keep.broker.audit_rate_per_uid, 0u);  // no limit
  EXPECT_EQ(keep.broker.audit_burst_per_uid, 5u);
  EXPECT_EQ(load_ok("[broker]\naudit_failure = \"deny\"\n").broker.audit_failure, AuditFailure::deny);
}

TEST(PolicyMistake, AuditFailureUnknownWord) {
  EXPECT_EQ(check("[broker]\naudit_failure = \"ignore\"\n"),
            (Lines{"t.toml:2:17: error: unknown audit_failure \"ignore\" (expected \"deny\" or \"continue\")"}));
  // Not a boolean in disguise either: the two words are the whole vocabulary.
  EXPECT_EQ(check("[broker]\naudit_failure = \"Deny\"\n"),
            (Lines{"t.toml:2:17: error: unknown audit_failure \"Deny\" (expected \"deny\" or \"continue\")"}));
}

TEST(PolicyMistake, AuditFailureWrongType) {
  EXPECT_EQ(check("[broker]\naudit_failure = false\n"),
            (Lines{"t.toml:2:17: error: audit_failure must be a string, not a boolean"}));
}

TEST(PolicyMistake, AuditFailureMisspelt) {
  EXPECT_EQ(check("[broker]\naudit_failures = \"deny\"\n"),
            (Lines{"t.toml:2:1: error: unknown key \"audit_failures\" in [broker] (did you mean \"audit_failure\"?)"}));
}

TEST(PolicyMistake, AuditBurstZero) {
  EXPECT_EQ(check("[broker]\naudit_burst_per_uid = 0\n"),
            (Lines{"t.toml:2:23: error: audit_burst_per_uid = 0 is out of range 1..4294967295"}));
  EXPECT_EQ(check("[broker]\naudit_rate_per_uid = -1\n"),
            (Lines{"t.toml:2:22: error: audit_rate_per_uid = -1 is out of range 0..4294967295"}));
}

TEST(PolicyMistake, ControlModeAsInteger) {
  EXPECT_EQ(check("[broker]\ncontrol_mode = 660\n"),
            (Lines{"t.toml:2:16: error: control_mode must be a string of octal digits such as \"0660\", not an "
                   "integer"}));
}

TEST(PolicyMistake, ControlModeNotOctal) {
  EXPECT_EQ(check("[broker]\ncontrol_mode = \"0689\"\n"),
            (Lines{"t.toml:2:16: error: control_mode \"0689\" is not an octal mode such as \"0660\""}));
}

TEST(PolicyMistake, ControlModeWithSpecialBits) {
  EXPECT_EQ(check("[broker]\ncontrol_mode = \"1777\"\n"),
            (Lines{"t.toml:2:16: error: control_mode \"1777\" is above \"0777\" (setuid, setgid and sticky bits are "
                   "not allowed)"}));
}

TEST(PolicyMistake, AdminGroupUnknown) {
  EXPECT_EQ(check("[broker]\nadmin_group = \"sockbroker-nosuch\"\n"),
            (Lines{"t.toml:2:15: error: unknown group \"sockbroker-nosuch\""}));
}

TEST(PolicyMistake, SocketIsNotATable) {
  EXPECT_EQ(check("socket = 5\n"),
            (Lines{"t.toml:1:10: error: socket must be a table of sockets ([socket.NAME]), not an integer"}));
}

TEST(PolicyMistake, SocketEntryIsNotATable) {
  EXPECT_EQ(check("[socket]\nweb = \"127.0.0.1:80\"\n"),
            (Lines{"t.toml:2:7: error: socket \"web\" must be a table ([socket.web]), not a string"}));
}

TEST(PolicyMistake, InvalidSocketName) {
  EXPECT_EQ(check("[socket.\"web site\"]\nlisten = \"127.0.0.1:80\"\n"),
            (Lines{"t.toml:1:9: error: invalid socket name \"web site\": names are 1..128 characters of "
                   "[A-Za-z0-9_.-]"}));
}

TEST(PolicyMistake, SocketNameWithColon) {
  // ":" separates LISTEN_FDNAMES, so it cannot be in a name.
  EXPECT_EQ(check("[socket.\"a:b\"]\nlisten = \"127.0.0.1:80\"\n"),
            (Lines{"t.toml:1:9: error: invalid socket name \"a:b\": names are 1..128 characters of [A-Za-z0-9_.-]"}));
}

TEST(PolicyMistake, UnknownSocketKeyWithSuggestion) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nreuseport = true\n"),
            (Lines{"t.toml:3:1: error: unknown key \"reuseport\" in [socket.web] (did you mean \"reuse_port\"?)"}));
}

TEST(PolicyMistake, MisspelledListenIsUnknownAndListenIsMissing) {
  EXPECT_EQ(check("[socket.web]\nlisen = \"127.0.0.1:80\"\n"),
            (Lines{"t.toml:1:1: error: socket \"web\" has no listen address (listen = \"...\")",
                   "t.toml:2:1: error: unknown key \"lisen\" in [socket.web] (did you mean \"listen\"?)"}));
}

TEST(PolicyMistake, RulesForASocketWithoutListen) {
  EXPECT_EQ(check("[[socket.web.allow]]\nuser = \"nobody\"\n"),
            (Lines{"t.toml:1:1: error: socket \"web\" has no listen address (listen = \"...\")"}));
}

TEST(PolicyMistake, ListenWrongType) {
  EXPECT_EQ(check("[socket.web]\nlisten = 80\n"),
            (Lines{"t.toml:2:10: error: listen must be a string, not an integer"}));
}

TEST(PolicyMistake, ListenPortOutOfRange) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:70000\"\n"),
            (Lines{"t.toml:2:10: error: invalid listen address \"127.0.0.1:70000\": port 70000 is out of range "
                   "1..65535"}));
}

TEST(PolicyMistake, ListenHostName) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"localhost:80\"\n"),
            (Lines{"t.toml:2:10: error: invalid listen address \"localhost:80\": \"localhost\" is not an IPv4 "
                   "address (names are not resolved; write the address)"}));
}

TEST(PolicyMistake, ListenIpv6WithoutPort) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"[::1]\"\n"),
            (Lines{"t.toml:2:10: error: invalid listen address \"[::1]\": missing port after ']'"}));
}

TEST(PolicyMistake, UnknownType) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\ntype = \"tcp\"\n"),
            (Lines{"t.toml:3:8: error: unknown socket type \"tcp\" (expected \"stream\", \"datagram\" or "
                   "\"seqpacket\")"}));
}

TEST(PolicyMistake, BooleanWrittenAsString) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nreuse_port = \"yes\"\n"),
            (Lines{"t.toml:3:14: error: reuse_port must be a boolean (true or false), not a string"}));
}

TEST(PolicyMistake, BacklogOutOfRange) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nbacklog = 0\n"),
            (Lines{"t.toml:3:11: error: backlog = 0 is out of range 1..65535"}));
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nbacklog = 65536\n"),
            (Lines{"t.toml:3:11: error: backlog = 65536 is out of range 1..65535"}));
}

TEST(PolicyMistake, MaxGrantsNegative) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nmax_grants = -1\n"),
            (Lines{"t.toml:3:14: error: max_grants = -1 is out of range 0..4294967295"}));
}

TEST(PolicyMistake, BindToDeviceNameTooLong) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nbind_to_device = \"a-very-long-ifname\"\n"),
            (Lines{"t.toml:3:18: error: bind_to_device \"a-very-long-ifname\" is not an interface name (1..15 "
                   "bytes, no \"/\", \":\" or whitespace)"}));
}

TEST(PolicyMistake, FastOpenNegative) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nfast_open = -1\n"),
            (Lines{"t.toml:3:13: error: fast_open = -1 is out of range 0..2147483647"}));
}

TEST(PolicyMistake, FastOpenOnDatagram) {
  EXPECT_EQ(check("[socket.dns]\nlisten = \"127.0.0.1:53\"\ntype = \"datagram\"\nfast_open = 16\n"),
            (Lines{"t.toml:4:1: error: fast_open applies only to TCP (type = \"stream\" on an IP address)",
                   "t.toml:4:13: warning: fast_open = 16 enables TCP Fast Open: data in a SYN reaches the service "
                   "before the handshake completes and can be replayed"}));
}

TEST(PolicyMistake, ReceiveBufferZero) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nreceive_buffer = 0\n"),
            (Lines{"t.toml:3:18: error: receive_buffer = 0 is out of range 1..2147483647"}));
}

TEST(PolicyMistake, SocketModeOnInetAddress) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nsocket_mode = \"0660\"\n"),
            (Lines{"t.toml:3:1: error: socket_mode applies only to Unix socket paths, not \"127.0.0.1:80\""}));
}

TEST(PolicyMistake, SocketUserOnAbstractAddress) {
  EXPECT_EQ(check("[socket.a]\nlisten = \"@a\"\nallow_abstract = true\nsocket_user = \"nobody\"\n"),
            (Lines{"t.toml:4:1: error: socket_user applies only to Unix socket paths, not \"@a\""}));
}

TEST(PolicyMistake, SocketUserUnknown) {
  EXPECT_EQ(check("[socket.app]\nlisten = \"/run/app.sock\"\nsocket_user = \"no-such-user\"\n"),
            (Lines{"t.toml:3:15: error: unknown user \"no-such-user\""}));
}

TEST(PolicyMistake, SocketGroupWrongType) {
  EXPECT_EQ(check("[socket.app]\nlisten = \"/run/app.sock\"\nsocket_group = true\n"),
            (Lines{"t.toml:3:16: error: socket_group must be a group name or an integer id, not a boolean"}));
}

TEST(PolicyMistake, AbstractWithoutAllowAbstract) {
  EXPECT_EQ(check("[socket.a]\nlisten = \"@demo\"\n"),
            (Lines{"t.toml:2:10: error: abstract address \"@demo\" needs allow_abstract = true in [socket.a]"}));
}

TEST(PolicyMistake, ReusePortOnUnixSocket) {
  EXPECT_EQ(check("[socket.app]\nlisten = \"/run/app.sock\"\nreuse_port = true\n"),
            (Lines{"t.toml:3:1: error: reuse_port does not apply to Unix sockets"}));
}

TEST(PolicyMistake, FreeBindOnUnixSocket) {
  EXPECT_EQ(check("[socket.app]\nlisten = \"/run/app.sock\"\nfree_bind = true\n"),
            (Lines{"t.toml:3:1: error: free_bind applies only to IP sockets, not \"/run/app.sock\"",
                   "t.toml:3:13: warning: free_bind = true lets the socket bind an address the host does not have"}));
}

TEST(PolicyMistake, UnknownNetns) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nnetns = \"host\"\n"),
            (Lines{"t.toml:3:9: error: unknown netns \"host\" (expected \"broker\" or \"request\")"}));
}

TEST(PolicyMistake, AllowIsASingleTable) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\n[socket.web.allow]\nuser = \"nobody\"\n"),
            (Lines{"t.toml:3:1: error: allow must be an array of tables (write [[socket.web.allow]]), not a table"}));
}

TEST(PolicyMistake, AllowElementIsNotATable) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nallow = [\"nobody\"]\n"),
            (Lines{"t.toml:3:10: error: an allow rule must be a table ([[socket.web.allow]]), not a string"}));
}

TEST(PolicyMistake, EmptyRule) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\n[[socket.web.allow]]\n"),
            (Lines{"t.toml:3:1: error: empty allow rule matches everyone; write the fields it must match"}));
}

TEST(PolicyMistake, UnknownRuleKey) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\n[[socket.web.allow]]\nusr = \"nobody\"\n"),
            (Lines{"t.toml:4:1: error: unknown key \"usr\" in [[socket.web.allow]] (did you mean \"user\"?)"}));
}

TEST(PolicyMistake, RuleUnknownUser) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\n[[socket.web.allow]]\nuser = \"wwwdata\"\n"),
            (Lines{"t.toml:4:8: error: unknown user \"wwwdata\""}));
}

TEST(PolicyMistake, RuleUnknownGroup) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\n[[socket.web.allow]]\ngroup = \"no-such-group\"\n"),
            (Lines{"t.toml:4:9: error: unknown group \"no-such-group\""}));
}

TEST(PolicyMistake, RuleUidOutOfRange) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\n[[socket.web.allow]]\nuser = -1\n"),
            (Lines{"t.toml:4:8: error: user = -1 is out of range 0..4294967294"}));
}

TEST(PolicyMistake, RuleUserEmpty) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\n[[socket.web.allow]]\nuser = \"\"\n"),
            (Lines{"t.toml:4:8: error: user must not be empty"}));
}

TEST(PolicyMistake, RuleUnitWithoutSuffix) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\n[[socket.web.allow]]\nunit = \"nginx\"\n"),
            (Lines{"t.toml:4:8: error: unit \"nginx\" is not a systemd unit name (it needs a suffix such as "
                   "\".service\" or \".scope\")"}));
}

TEST(PolicyMistake, RuleUnitWithBadCharacters) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\n[[socket.web.allow]]\nunit = \"a/b.service\"\n"),
            (Lines{"t.toml:4:8: error: unit \"a/b.service\" is not a valid systemd unit name"}));
}

TEST(PolicyMistake, RuleExecutableRelative) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\n[[socket.web.allow]]\nexecutable = \"nginx\"\n"),
            (Lines{"t.toml:4:14: error: executable \"nginx\" must be an absolute path"}));
}

TEST(PolicyMistake, RuleCgroupRelative) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\n[[socket.web.allow]]\ncgroup = \"system.slice\"\n"),
            (Lines{"t.toml:4:10: error: cgroup \"system.slice\" must be an absolute cgroup path such as "
                   "\"/system.slice\""}));
}

TEST(PolicyMistake, UserStringsAreEscapedInMessages) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\n[[socket.web.allow]]\nuser = \"a\\nb\\\"c\"\n"),
            (Lines{"t.toml:4:8: error: unknown user \"a\\x0ab\\\"c\""}));
}

TEST(PolicyMistake, NulByteInStrings) {
  // C APIs would stop at the NUL: "root" and 127.0.0.1 must not be what is meant.
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1\\u0000x:80\"\n[[socket.web.allow]]\nuser = "
                  "\"root\\u0000x\"\n"),
            (Lines{"t.toml:2:10: error: listen \"127.0.0.1\\x00x:80\" contains a NUL byte",
                   "t.toml:4:8: error: user \"root\\x00x\" contains a NUL byte"}));
}

TEST(PolicyMistake, SeveralMistakesAreAllReportedInPositionOrder) {
  EXPECT_EQ(
      check(R"([socket.b]
listen = "127.0.0.1:70000"
[socket.a]
listen = "127.0.0.1:80"
backlog = -1
[broker]
max_clients = 0
)"),
      (Lines{"t.toml:2:10: error: invalid listen address \"127.0.0.1:70000\": port 70000 is out of range 1..65535",
             "t.toml:5:11: error: backlog = -1 is out of range 1..65535",
             "t.toml:7:15: error: max_clients = 0 is out of range 1..4294967295"}));
}

// ---------------------------------------------------------------------------
// TOML syntax: what toml++ stops on, said as what to write instead, at the
// place the mistake starts (loader.cpp's SyntaxExplainer).

TEST(PolicySyntax, UnclosedString) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\ntype = \"stream\"\n"),
            (Lines{"t.toml:2:10: error: listen = \"127.0.0.1:80: the string is not closed; end it with \" on the same "
                   "line"}));
  EXPECT_EQ(check("[socket.web]\nlisten = '127.0.0.1:80\n"),
            (Lines{"t.toml:2:10: error: listen = '127.0.0.1:80: the string is not closed; end it with ' on the same "
                   "line"}));
  // At the end of a file without a final line break, and in a CRLF file.
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80"),
            (Lines{"t.toml:2:10: error: listen = \"127.0.0.1:80: the string is not closed; end it with \" on the same "
                   "line"}));
  EXPECT_EQ(check("[socket.web]\r\nlisten = \"127.0.0.1:80\r\n"),
            (Lines{"t.toml:2:10: error: listen = \"127.0.0.1:80: the string is not closed; end it with \" on the same "
                   "line"}));
  // A rule's string, after a closed one with an escaped quote in it.
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\" # \"web\"\n[[socket.web.allow]]\nunit = \"a\\\"b\"\n"
                  "executable = \"/usr/bin/x\n"),
            (Lines{"t.toml:5:14: error: executable = \"/usr/bin/x: the string is not closed; end it with \" on the "
                   "same line"}));
}

TEST(PolicySyntax, UnclosedMultiLineString) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"\"\"127.0.0.1:80\n\n[[socket.web.allow]]\nuser = \"nobody\"\n"),
            (Lines{"t.toml:2:10: error: listen = \"\"\"127.0.0.1:80: this multi-line string is never closed; end it "
                   "with \"\"\""}));
}

TEST(PolicySyntax, ControlCharacterInAString) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1\x01:80\"\n"),
            (Lines{"t.toml:2:20: error: control character U+0001 inside a string; write it as \\u0001"}));
}

TEST(PolicySyntax, ModeWithALeadingZero) {
  EXPECT_EQ(check("[socket.app]\nlisten = \"/run/app.sock\"\nsocket_mode = 0660\n"),
            (Lines{"t.toml:3:15: error: socket_mode = 0660: TOML integers cannot start with 0; write the mode as a "
                   "string, \"0660\""}));
  EXPECT_EQ(check("[broker]\ncontrol_mode = 0666 # everyone\n"),
            (Lines{"t.toml:2:16: error: control_mode = 0666: TOML integers cannot start with 0; write the mode as a "
                   "string, \"0666\""}));
}

TEST(PolicySyntax, NumberWithALeadingZero) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nbacklog = 0128\n"),
            (Lines{"t.toml:3:11: error: backlog = 0128: TOML integers cannot start with 0; write 128"}));
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nmax_grants = 00\n"),
            (Lines{"t.toml:3:14: error: max_grants = 00: TOML integers cannot start with 0; write 0"}));
}

TEST(PolicySyntax, MissingEquals) {
  EXPECT_EQ(check("[socket.web]\nlisten \"127.0.0.1:80\"\n"),
            (Lines{"t.toml:2:8: error: \"=\" is missing between listen and its value; write listen = "
                   "\"127.0.0.1:80\""}));
  EXPECT_EQ(check("[socket.web]\nlisten: \"127.0.0.1:80\"\n"),
            (Lines{"t.toml:2:7: error: listen: TOML separates a key from its value with \"=\", not \":\"; write "
                   "listen = \"127.0.0.1:80\""}));
  EXPECT_EQ(check("[socket.web]\nlisten\n"), (Lines{"t.toml:2:7: error: listen has no value; write listen = VALUE"}));
  EXPECT_EQ(check("[socket.web]\nlisten =\n"), (Lines{"t.toml:2:9: error: listen has no value after \"=\""}));
  EXPECT_EQ(check("[[socket.web.allow]]\nuser name = \"nobody\"\n"),
            (Lines{"t.toml:2:6: error: expected \"=\" after the key user, not \"n\" (a key with blanks or other "
                   "characters is written in quotes)"}));
}

TEST(PolicySyntax, KeySetTwiceNamesTheFirst) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nbacklog = 5\n  listen = \"127.0.0.1:81\"\n"),
            (Lines{"t.toml:4:3: error: listen is set twice in [socket.web]; the first is at t.toml:2:1"}));
  // Each rule is a table of its own: the same key in two rules is no mistake,
  // and the first of a pair is looked for in the rule, not before it.
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\n[[socket.web.allow]]\nuser = \"nobody\"\n"
                  "[[socket.web.allow]]\nuser = \"root\"\nunit = \"a.service\"\nuser = \"daemon\"\n"),
            (Lines{"t.toml:8:1: error: user is set twice in [[socket.web.allow]]; the first is at t.toml:6:1"}));
  EXPECT_EQ(check("[broker]\nmax_clients = 1\n\"max_clients\" = 2\n"),
            (Lines{"t.toml:3:1: error: \"max_clients\" is already defined in [broker] (as an integer); a key can "
                   "be set only once"}));
}

TEST(PolicySyntax, TableDefinedTwiceNamesTheFirst) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\n\n[socket . web]\nbacklog = 5\n"),
            (Lines{"t.toml:4:1: error: [socket . web] is defined twice; the first is at t.toml:1:1"}));
}

TEST(PolicySyntax, RuleHeaderWithSingleBrackets) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\n[[socket.web.allow]]\nuser = \"nobody\"\n"
                  "[socket.web.allow]\nuser = \"root\"\n"),
            (Lines{"t.toml:5:1: error: [socket.web.allow] has single brackets, but socket.web.allow is an array of "
                   "tables ([[socket.web.allow]] at t.toml:3:1); write [[socket.web.allow]] for each of its tables"}));
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\n[socket.web.allow]\nuser = \"nobody\"\n"
                  "[[socket.web.allow]]\nuser = \"root\"\n"),
            (Lines{"t.toml:5:1: error: [[socket.web.allow]] has double brackets, but socket.web.allow is a table "
                   "([socket.web.allow] at t.toml:3:1); write [[socket.web.allow]] for each of its tables"}));
}

TEST(PolicySyntax, BadTableHeaders) {
  const std::string forms = "; a socket is [socket.NAME], a rule [[socket.NAME.allow]]";
  EXPECT_EQ(check("[socket.web\nlisten = \"127.0.0.1:80\"\n"),
            (Lines{"t.toml:1:1: error: the table header [socket.web is not closed; write [socket.web]"}));
  EXPECT_EQ(check("[[socket.web.allow]\nuser = \"nobody\"\n"),
            (Lines{"t.toml:1:1: error: the table header [[socket.web.allow] is not closed; write "
                   "[[socket.web.allow]]"}));
  EXPECT_EQ(check("[socket.web]]\nlisten = \"127.0.0.1:80\"\n"),
            (Lines{"t.toml:1:13: error: [socket.web]] has one \"]\" too many; write [socket.web]"}));
  EXPECT_EQ(check("[socket web]\n"), (Lines{"t.toml:1:9: error: unexpected \"w\" in the table header [socket web]" + forms}));
  EXPECT_EQ(check("[socket.]\n"),
            (Lines{"t.toml:1:9: error: the table header [socket.] has an empty name between dots" + forms}));
  EXPECT_EQ(check("[]\n"), (Lines{"t.toml:1:2: error: the table header [] has no name" + forms}));
}

TEST(PolicySyntax, NonAscii) {
  const std::string key_rule = " cannot be part of a key or a name: keys and socket names are written in ASCII "
                               "letters, digits, \"_\" and \"-\"";
  EXPECT_EQ(check("[socket.caf\u00e9]\nlisten = \"127.0.0.1:80\"\n"),
            (Lines{"t.toml:1:12: error: \"\u00e9\" (U+00E9)" + key_rule}));
  EXPECT_EQ(check("[socket.web]\nl\u00efsten = \"127.0.0.1:80\"\n"),
            (Lines{"t.toml:2:2: error: \"\u00ef\" (U+00EF)" + key_rule}));
  // A Cyrillic letter that looks like a Latin one.
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nbacklog = 5\u0445\n"),
            (Lines{"t.toml:3:12: error: backlog = 5\u0445: \"\u0445\" (U+0445) is not ASCII; numbers, true and false "
                   "are plain ASCII, and text goes between quotes"}));
  // What word processors and chat clients make of quotes and spaces.
  EXPECT_EQ(check("[socket.web]\nlisten = \u201c127.0.0.1:80\u201d\n"),
            (Lines{"t.toml:2:10: error: \u201c (U+201C) is a typographic quote; TOML strings are written between "
                   "plain quotes, \"...\""}));
  EXPECT_EQ(check("[socket.web]\nlisten\u00a0= \"127.0.0.1:80\"\n"),
            (Lines{"t.toml:2:7: error: U+00A0 (a no-break space) is a space TOML does not accept; use a plain space "
                   "or a tab"}));
  // Not UTF-8 at all (a Latin-1 editor's "é").
  EXPECT_EQ(check("[socket.web]\nlisten = \"caf\xe9\"\n"),
            (Lines{"t.toml:2:14: error: the file is not UTF-8 text here; a policy is written in UTF-8"}));
}

TEST(PolicySyntax, ValuesThatAreNotTomlValues) {
  EXPECT_EQ(check("[socket.web]\nlisten = 127.0.0.1:80\n"),
            (Lines{"t.toml:2:10: error: listen = 127.0.0.1:80: text must be written in quotes; write listen = "
                   "\"127.0.0.1:80\""}));
  EXPECT_EQ(check("[socket.web]\nlisten = /run/app.sock\n"),
            (Lines{"t.toml:2:10: error: listen = /run/app.sock: text must be written in quotes; write listen = "
                   "\"/run/app.sock\""}));
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nreuse_port = True\n"),
            (Lines{"t.toml:3:14: error: reuse_port = True: booleans are written in lower case; write reuse_port = "
                   "true"}));
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nreuse_port = yes\n"),
            (Lines{"t.toml:3:14: error: reuse_port = yes: a boolean is true or false"}));
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nbacklog = 99999999999999999999\n"),
            (Lines{"t.toml:3:11: error: backlog = 99999999999999999999: the number does not fit in 64 bits"}));
}

TEST(PolicySyntax, BackslashInABasicString) {
  EXPECT_EQ(check("[[socket.web.allow]]\nexecutable = \"C:\\srv\\web\"\n"),
            (Lines{"t.toml:2:17: error: \\s is not a TOML escape sequence; write a backslash as \\\\, or put the text "
                   "between single quotes ('...'), where a backslash is plain"}));
}

TEST(PolicySyntax, MoreThanOneValueOnALine) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\", backlog = 5\n"),
            (Lines{"t.toml:2:24: error: unexpected \",\" after the value of listen: TOML has one KEY = VALUE per line, "
                   "without commas"}));
  EXPECT_EQ(check("[socket.web]\nlisten = [\"127.0.0.1:80\" \"127.0.0.1:81\"]\n"),
            (Lines{"t.toml:2:26: error: unexpected \"\\\"\" in an array; separate its values with \",\" and close it "
                   "with \"]\""}));
  EXPECT_EQ(check("[socket.web]\nallow = [{ user = \"nobody\",\n  group = \"nogroup\" }]\n"),
            (Lines{"t.toml:2:28: error: an inline table { ... } must be closed on the line it opens; write it on one "
                   "line, or as a [table] with a header"}));
}

// Whatever the mistake, the operator reads the loader's words: toml++'s own
// ("Error while parsing ...") never reach them, and the line is one line.
TEST(PolicySyntax, TomlppsWordsNeverReachTheOperator) {
  const std::string_view mistakes[] = {
      "[socket.web]\nlisten = \"127.0.0.1:80\" x\n", "x = tru\n",          "[socket.web]\nlisten = [}\n",
      "[socket.web]\nlisten = \"\\u12\"\n",        "a = 1979-05-27T7:32:00Z\n", "a = 1__0\n",
      "a = {b = 1,}\n",                               "a = [1,,2]\n",       "a = 0x\n",
      "a = 1e\n",                                     "a = +inf_\n",        "\"a\nb\" = 1\n",
      "a = 'b\n",                                     "a = '''b\n",         "a.b = 1\na.b.c = 2\n",
      "[a]\nb = 1\n[a.b]\n",                          "a = 1\r2\n",         "[a\n",
      "= 1\n",                                        "a = [1\n",           "a = \"\\",
  };
  for (std::string_view text : mistakes) {
    LoadResult result = load_policy_text(text, "t.toml");
    ASSERT_FALSE(result.diagnostics.empty()) << text;
    for (const Diagnostic& d : result.diagnostics) {
      EXPECT_EQ(d.message.find("Error while parsing"), std::string::npos) << testing::PrintToString(text) << ": " << d.format();
      EXPECT_GE(d.where.line, 1) << d.format();
      EXPECT_GE(d.where.column, 1) << d.format();
      for (unsigned char c : d.format()) EXPECT_FALSE(c < 0x20 || c == 0x7f) << d.format();
    }
  }
}

// ---------------------------------------------------------------------------
// Warnings and strict mode

TEST(PolicyWarning, WildcardAddress) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"0.0.0.0:80\"\n"),
            (Lines{"t.toml:2:10: warning: listen \"0.0.0.0:80\" listens on every interface; name the address it "
                   "should serve"}));
  EXPECT_EQ(check("[socket.web]\nlisten = \"[::]:80\"\nv6only = true\n"),
            (Lines{"t.toml:2:10: warning: listen \"[::]:80\" listens on every interface; name the address it should "
                   "serve"}));
}

// nginx's `listen [::]:80` is IPv6-only; Go's, Node's and Python's [::] take
// IPv4 too. Without v6only written, the policy says nothing about which.
TEST(PolicyWarning, Ipv6WildcardWithoutV6only) {
  const std::string every = "t.toml:2:10: warning: listen \"[::]:80\" listens on every interface; name the address it "
                            "should serve";
  EXPECT_EQ(check("[socket.web]\nlisten = \"[::]:80\"\n"),
            (Lines{every, "t.toml:2:10: warning: listen \"[::]:80\" takes IPv6 only (v6only = true), as nginx's "
                          "listen [::]:80 does; Go, Node and Python bind [::] for IPv4 too and need v6only = false: "
                          "write v6only either way"}));
  EXPECT_EQ(check("[socket.dns]\nlisten = \"[0::0]:53\"\ntype = \"datagram\"\n"),
            (Lines{"t.toml:2:10: warning: listen \"[0::0]:53\" listens on every interface; name the address it "
                   "should serve",
                   "t.toml:2:10: warning: listen \"[0::0]:53\" takes IPv6 only (v6only = true), as nginx's listen "
                   "[0::0]:53 does; Go, Node and Python bind [::] for IPv4 too and need v6only = false: write v6only "
                   "either way"}));
  // Written either way, it is the operator's choice.
  EXPECT_EQ(check("[socket.web]\nlisten = \"[::]:80\"\nv6only = false\n"), Lines{every});
  EXPECT_EQ(check("[socket.web]\nlisten = \"[::]:80\"\nv6only = true\n"), Lines{every});
  // One address, or IPv4: nothing to choose.
  EXPECT_EQ(check("[socket.web]\nlisten = \"[::1]:80\"\n"), Lines{});
  EXPECT_EQ(check("[socket.web]\nlisten = \"[2001:db8::1]:80\"\n"), Lines{});
}

TEST(PolicyWarning, FastOpenFreeBindTransparent) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nfast_open = 256\nfree_bind = true\ntransparent = "
                  "true\n"),
            (Lines{"t.toml:3:13: warning: fast_open = 256 enables TCP Fast Open: data in a SYN reaches the service "
                   "before the handshake completes and can be replayed",
                   "t.toml:4:13: warning: free_bind = true lets the socket bind an address the host does not have",
                   "t.toml:5:15: warning: transparent = true lets the socket accept traffic addressed to other hosts "
                   "(TPROXY)"}));
  // Explicitly off is not worth a word.
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nfast_open = 0\nfree_bind = false\ntransparent = false\n"),
            Lines{});
}

TEST(PolicyWarning, V6onlyOnIpv4) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nv6only = false\n"),
            (Lines{"t.toml:3:1: warning: v6only applies only to IPv6 addresses; it is ignored for \"127.0.0.1:80\""}));
}

TEST(PolicyWarning, BacklogOnDatagram) {
  EXPECT_EQ(check("[socket.dns]\nlisten = \"127.0.0.1:53\"\ntype = \"datagram\"\nbacklog = 128\n"),
            (Lines{"t.toml:4:1: warning: backlog is ignored for datagram sockets"}));
}

TEST(PolicyWarning, MaxGrantsOnARequestNetnsSocket) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nnetns = \"request\"\nmax_grants = 4\nnetns_owner = "
                  "\"requester\"\n"),
            (Lines{"t.toml:4:1: warning: max_grants is ignored for netns = \"request\" sockets: the broker keeps no "
                   "reference to them and cannot see when they are closed"}));
}

// netns = "request" without netns_owner or netns_path: any namespace the
// requester can open (but the broker's own) qualifies, another container's too.
TEST(PolicyWarning, RequestNetnsWithoutRestriction) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nnetns = \"request\"\n"),
            (Lines{"t.toml:3:9: warning: netns = \"request\" binds in any network namespace the requester can open but "
                   "the broker's own, another container's /run/netns/NAME (readable by everyone) included: restrict "
                   "it with netns_owner = \"requester\" or netns_path"}));
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nnetns = \"request\"\n", LoadOptions{.strict = true}).size(),
            1u);
}

TEST(PolicyWarning, BufferAboveKernelMaximum) {
  long rmem_max = read_proc_long("/proc/sys/net/core/rmem_max");
  long wmem_max = read_proc_long("/proc/sys/net/core/wmem_max");
  if (rmem_max <= 0 || rmem_max >= 2147483647 || wmem_max <= 0 || wmem_max >= 2147483647) {
    SBTEST_SKIP_OR_FAIL("net.core.[rw]mem_max unreadable or at INT_MAX");
  }
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nreceive_buffer = 2147483647\nsend_buffer = "
                  "2147483647\n"),
            (Lines{"t.toml:3:18: warning: receive_buffer = 2147483647 exceeds net.core.rmem_max; the kernel will "
                   "clamp it to " +
                       std::to_string(rmem_max),
                   "t.toml:4:15: warning: send_buffer = 2147483647 exceeds net.core.wmem_max; the kernel will clamp "
                   "it to " +
                       std::to_string(wmem_max)}));
  // At the limit is fine.
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nreceive_buffer = " + std::to_string(rmem_max) + "\n"),
            Lines{});
}

TEST(PolicyWarning, WarningsDoNotPreventThePolicy) {
  LoadResult result = load_policy_text("[socket.web]\nlisten = \"0.0.0.0:80\"\n", "t.toml");
  ASSERT_TRUE(result.policy.has_value());
  ASSERT_EQ(result.diagnostics.size(), 1u);
  EXPECT_EQ(result.diagnostics[0].severity, Diagnostic::Severity::warning);
}

TEST(PolicyWarning, StrictMakesWarningsErrors) {
  LoadOptions strict;
  strict.strict = true;
  LoadResult result = load_policy_text("[socket.web]\nlisten = \"0.0.0.0:80\"\n", "t.toml", strict);
  EXPECT_FALSE(result.policy.has_value());
  EXPECT_EQ(format_all(result), (Lines{"t.toml:2:10: error: listen \"0.0.0.0:80\" listens on every interface; name "
                                       "the address it should serve"}));
  // A clean policy is still fine under strict.
  EXPECT_TRUE(load_policy_text("[socket.web]\nlisten = \"127.0.0.1:80\"\n", "t.toml", strict).policy.has_value());
}

// ---------------------------------------------------------------------------
// Conflicts between sockets

TEST(PolicyConflict, DualStackWildcardTakesIpv4Wildcard) {
  EXPECT_EQ(check(R"([socket.v6]
listen = "[::]:8080"
v6only = false
[socket.v4]
listen = "0.0.0.0:8080"
)"),
            (Lines{"t.toml:2:10: warning: listen \"[::]:8080\" listens on every interface; name the address it should "
                   "serve",
                   "t.toml:5:10: warning: listen \"0.0.0.0:8080\" listens on every interface; name the address it "
                   "should serve",
                   "t.toml:5:10: error: listen \"0.0.0.0:8080\" conflicts with socket \"v6\" (\"[::]:8080\" at "
                   "t.toml:2:10); sockets can share a port only if both set reuse_port = true"}));
}

TEST(PolicyConflict, DualStackWildcardTakesEveryIpv4Address) {
  EXPECT_EQ(check("[socket.v6]\nlisten = \"[::]:8080\"\nv6only = false\n[socket.v4]\nlisten = \"127.0.0.1:8080\"\n"),
            (Lines{"t.toml:2:10: warning: listen \"[::]:8080\" listens on every interface; name the address it should "
                   "serve",
                   "t.toml:5:10: error: listen \"127.0.0.1:8080\" conflicts with socket \"v6\" (\"[::]:8080\" at "
                   "t.toml:2:10); sockets can share a port only if both set reuse_port = true"}));
}

TEST(PolicyConflict, DualStackV4MappedAddressTakesThatIpv4Address) {
  EXPECT_EQ(check("[socket.v6]\nlisten = \"[::ffff:127.0.0.1]:8080\"\nv6only = false\n[socket.v4]\nlisten = "
                  "\"127.0.0.1:8080\"\n[socket.other]\nlisten = \"127.0.0.2:8080\"\n"),
            (Lines{"t.toml:5:10: error: listen \"127.0.0.1:8080\" conflicts with socket \"v6\" "
                   "(\"[::ffff:127.0.0.1]:8080\" at t.toml:2:10); sockets can share a port only if both set "
                   "reuse_port = true"}));
}

TEST(PolicyConflict, V6onlyWildcardLeavesIpv4Free) {
  LoadResult result =
      load_policy_text("[socket.v6]\nlisten = \"[::]:8080\"\n[socket.v4]\nlisten = \"0.0.0.0:8080\"\n", "t.toml");
  EXPECT_TRUE(result.policy.has_value()) << testing::PrintToString(format_all(result));
}

TEST(PolicyConflict, WildcardAndSpecificAddress) {
  EXPECT_EQ(check("[socket.one]\nlisten = \"127.0.0.1:80\"\n[socket.all]\nlisten = \"0.0.0.0:80\"\n"),
            (Lines{"t.toml:4:10: warning: listen \"0.0.0.0:80\" listens on every interface; name the address it "
                   "should serve",
                   "t.toml:4:10: error: listen \"0.0.0.0:80\" conflicts with socket \"one\" (\"127.0.0.1:80\" at "
                   "t.toml:2:10); sockets can share a port only if both set reuse_port = true"}));
}

TEST(PolicyConflict, SameAddressReportedAtTheLaterSocket) {
  // "b" sorts before "z" but is written after it: the later one in the file is blamed.
  EXPECT_EQ(check("[socket.z]\nlisten = \"[::1]:80\"\n[socket.b]\nlisten = \"[0:0::1]:80\"\n"),
            (Lines{"t.toml:4:10: error: listen \"[0:0::1]:80\" conflicts with socket \"z\" (\"[::1]:80\" at "
                   "t.toml:2:10); sockets can share a port only if both set reuse_port = true"}));
}

TEST(PolicyConflict, BothReusePortMayShare) {
  Policy p = load_ok(R"([socket.a]
listen = "127.0.0.1:80"
reuse_port = true
[socket.b]
listen = "127.0.0.1:80"
reuse_port = true
)");
  EXPECT_EQ(p.sockets.size(), 2u);
}

TEST(PolicyConflict, OneReusePortIsNotEnough) {
  EXPECT_EQ(check("[socket.a]\nlisten = \"127.0.0.1:80\"\nreuse_port = true\n[socket.b]\nlisten = "
                  "\"127.0.0.1:80\"\n"),
            (Lines{"t.toml:5:10: error: listen \"127.0.0.1:80\" conflicts with socket \"a\" (\"127.0.0.1:80\" at "
                   "t.toml:2:10); sockets can share a port only if both set reuse_port = true"}));
}

TEST(PolicyConflict, DifferentTypesDifferentAddressesOrPortsAreFine) {
  load_ok(R"([socket.tcp]
listen = "127.0.0.1:53"
[socket.udp]
listen = "127.0.0.1:53"
type = "datagram"
[socket.sctp]
listen = "127.0.0.1:53"
type = "seqpacket"
[socket.other-address]
listen = "127.0.0.2:53"
[socket.other-port]
listen = "127.0.0.1:54"
[socket.v6]
listen = "[::1]:53"
)");
}

// A request socket is never bound in the broker's own namespace (the broker
// refuses it), so it cannot meet a broker socket; two request sockets can meet
// in one requested namespace.
TEST(PolicyConflict, RequestNamespaceDoesNotConflictWithBrokerNamespace) {
  load_ok(R"([socket.host]
listen = "127.0.0.1:80"
[socket.container]
listen = "127.0.0.1:80"
netns = "request"
netns_owner = "requester"
)");
  EXPECT_EQ(check("[socket.c1]\nlisten = \"127.0.0.1:80\"\nnetns = \"request\"\nnetns_owner = \"requester\"\n[socket.c2]\n"
                  "listen = \"127.0.0.1:80\"\nnetns = \"request\"\nnetns_owner = \"requester\"\n"),
            (Lines{"t.toml:6:10: error: listen \"127.0.0.1:80\" conflicts with socket \"c1\" (\"127.0.0.1:80\" at "
                   "t.toml:2:10); sockets can share a port only if both set reuse_port = true"}));
}

TEST(PolicyConflict, SameUnixPath) {
  EXPECT_EQ(check("[socket.a]\nlisten = \"/run/x.sock\"\n[socket.b]\nlisten = \"/run/x.sock\"\ntype = "
                  "\"datagram\"\n"),
            (Lines{"t.toml:4:10: error: listen \"/run/x.sock\" conflicts with socket \"a\" (\"/run/x.sock\" at "
                   "t.toml:2:10)"}));
}

// One spelling per path: the broker walks it a directory at a time and
// follows nothing, so "//", "." and ".." are refused rather than normalised.
TEST(PolicyAddress, UnixPathsAreWrittenPlainly) {
  for (const char* path : {"/run//x.sock", "/run/./x.sock", "/run/../x.sock", "/run/a/.."}) {
    auto lines = check("[socket.a]\nlisten = \"" + std::string(path) + "\"\n");
    ASSERT_EQ(lines.size(), 1u) << path;
    EXPECT_NE(lines[0].find("write it plainly"), std::string::npos) << lines[0];
  }
}

TEST(PolicyConflict, SameAbstractName) {
  EXPECT_EQ(check("[socket.a]\nlisten = \"@x\"\nallow_abstract = true\n[socket.b]\nlisten = \"@x\"\nallow_abstract = "
                  "true\n"),
            (Lines{"t.toml:5:10: error: listen \"@x\" conflicts with socket \"a\" (\"@x\" at t.toml:2:10)"}));
}

// ---------------------------------------------------------------------------
// netns_owner and netns_path: where a netns = "request" socket may be bound

TEST(PolicyNetns, OwnerAndPathTakeOneValueOrAnArray) {
  Policy p = load_ok(R"([socket.a]
listen = "127.0.0.1:80"
netns = "request"
netns_owner = "requester"
[socket.b]
listen = "127.0.0.1:81"
netns = "request"
netns_owner = 1000
netns_path = ["/run/netns/ctr-*", "/run/netns/web"]
[socket.c]
listen = "127.0.0.1:82"
netns = "request"
netns_path = "/run/netns/[ab]?"
)");
  const NetnsAllow& a = p.find("a")->netns_allow;
  EXPECT_TRUE(a.owned_by_requester);
  EXPECT_TRUE(a.owners.empty());
  EXPECT_TRUE(a.paths.empty());
  const NetnsAllow& b = p.find("b")->netns_allow;
  EXPECT_FALSE(b.owned_by_requester);
  EXPECT_EQ(b.owners, std::vector<uid_t>{1000});
  EXPECT_EQ(b.paths, (Lines{"/run/netns/ctr-*", "/run/netns/web"}));
  EXPECT_EQ(p.find("c")->netns_allow.paths, Lines{"/run/netns/[ab]?"});
}

TEST(PolicyNetns, OnlyForRequestSockets) {
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nnetns_owner = \"requester\"\nnetns_path = \"/run/netns/x\"\n"),
            (Lines{"t.toml:3:1: error: netns_owner applies only to netns = \"request\" sockets",
                   "t.toml:4:1: error: netns_path applies only to netns = \"request\" sockets"}));
  EXPECT_EQ(check("[socket.web]\nlisten = \"127.0.0.1:80\"\nnetns = \"broker\"\nnetns_owner = 0\n"),
            (Lines{"t.toml:4:1: error: netns_owner applies only to netns = \"request\" sockets"}));
}

TEST(PolicyNetns, OwnerMistakes) {
  const std::string head = "[socket.web]\nlisten = \"127.0.0.1:80\"\nnetns = \"request\"\n";
  EXPECT_EQ(check(head + "netns_owner = \"no-such-user-here\"\n"),
            (Lines{"t.toml:4:15: error: unknown user \"no-such-user-here\""}));
  EXPECT_EQ(check(head + "netns_owner = []\n"), (Lines{"t.toml:4:15: error: netns_owner must name at least one owner"}));
  EXPECT_EQ(check(head + "netns_owner = true\n"),
            (Lines{"t.toml:4:15: error: netns_owner must be \"requester\", a user name or a uid (or an array of them), "
                   "not a boolean"}));
  EXPECT_EQ(check(head + "netns_owner = [\"requester\", 1.5]\n"),
            (Lines{"t.toml:4:29: error: netns_owner must be \"requester\", a user name or a uid (or an array of them), "
                   "not a floating-point number"}));
  EXPECT_EQ(check(head + "netns_owner = -1\n"), (Lines{"t.toml:4:15: error: netns_owner = -1 is out of range 0..4294967294"}));
}

TEST(PolicyNetns, PathMistakes) {
  const std::string head = "[socket.web]\nlisten = \"127.0.0.1:80\"\nnetns = \"request\"\nnetns_path = ";
  const std::pair<const char*, const char*> cases[] = {
      {"\"run/netns/x\"", "must be an absolute path such as \"/run/netns/ctr-*\""},
      {"\"/run/netns/\"", "ends in \"/\": name the namespace files, such as \"/run/netns/*\""},
      {"\"/run//netns/x\"", "is not written plainly (no \"//\", \".\" or \"..\"): write it plainly"},
      {"\"/run/netns/../x\"", "is not written plainly (no \"//\", \".\" or \"..\"): write it plainly"},
      {"\"/run/netns/..\"", "is not written plainly (no \"//\", \".\" or \"..\"): write it plainly"},
      {"\"/run/*/x\"", "has a wildcard in a directory: only its last component may have one"},
  };
  for (const auto& [value, why] : cases) {
    const std::string text = std::string(value);
    EXPECT_EQ(check(head + text + "\n"),
              (Lines{"t.toml:4:14: error: netns_path " + text + " " + why}))
        << value;
  }
  EXPECT_EQ(check(head + "42\n"), (Lines{"t.toml:4:14: error: netns_path must be a string, not an integer"}));
  EXPECT_EQ(check(head + "[]\n"), (Lines{"t.toml:4:14: error: netns_path must name at least one path"}));
}

// The broker follows no link and searches only directories only root can
// change; `check` says so at the value.
TEST(PolicyNetns, PathThroughALinkOrAnotherUsersDirectoryIsAnError) {
  char pattern[] = "/tmp/sockbroker-netns-path-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const std::string dir = pattern;
  std::filesystem::create_directory(dir + "/real");
  std::filesystem::create_directory_symlink(dir + "/real", dir + "/link");
  const std::string head = "[socket.web]\nlisten = \"127.0.0.1:80\"\nnetns = \"request\"\nnetns_path = ";
  if (::geteuid() != 0) {
    // Without root the test's own directory, the caller's, is the first one
    // on the way that root could not trust.
    for (const char* below : {"/link/ns-*", "/real/ns-*"}) {
      auto lines = check(head + "\"" + dir + below + "\"\n");
      ASSERT_EQ(lines.size(), 1u);
      EXPECT_EQ(lines[0], "t.toml:4:14: error: \"" + dir + "\", on the way to \"" + dir + below + "\", is owned by uid " +
                              std::to_string(::geteuid()) +
                              ", not root: the broker searches netns_path only in directories only root can change");
    }
    std::filesystem::remove_all(dir);
    return;
  }
  auto lines = check(head + "\"" + dir + "/link/ns-*\"\n");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "t.toml:4:14: error: \"" + dir + "/link\", on the way to \"" + dir +
                          "/link/ns-*\", is a symbolic link: write the path without links (the broker follows none)");
  EXPECT_EQ(check(head + "\"" + dir + "/real/ns-*\"\n"), Lines{});
  ASSERT_EQ(::chown((dir + "/real").c_str(), 65534, 65534), 0);
  lines = check(head + "\"" + dir + "/real/ns-*\"\n");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "t.toml:4:14: error: \"" + dir + "/real\", on the way to \"" + dir +
                          "/real/ns-*\", is owned by uid 65534, not root: the broker searches netns_path only in "
                          "directories only root can change");
  std::filesystem::remove_all(dir);
}

// ---------------------------------------------------------------------------
// same_binding: what lets a reload keep the kernel socket

TEST(SameBinding, RulesAndLimitsDoNotMatterSocketOptionsDo) {
  Policy p = load_ok(R"([socket.a]
listen = "127.0.0.1:80"
[socket.b]
listen = "127.0.0.1:81"
)");
  SocketSpec a = p.sockets.at(0);
  SocketSpec b = a;
  EXPECT_TRUE(same_binding(a, b));

  b.allow.push_back(Rule{});
  b.max_grants = 9;
  b.where.line = 42;
  EXPECT_TRUE(same_binding(a, b));

  auto differs = [&](auto mutate) {
    SocketSpec c = a;
    mutate(c);
    return !same_binding(a, c);
  };
  EXPECT_TRUE(differs([&](SocketSpec& c) { c.listen = p.sockets.at(1).listen; }));
  EXPECT_TRUE(differs([](SocketSpec& c) { c.type = SocketType::datagram; }));
  EXPECT_TRUE(differs([](SocketSpec& c) { c.reuse_port = true; }));
  EXPECT_TRUE(differs([](SocketSpec& c) { c.backlog = 10; }));
  EXPECT_TRUE(differs([](SocketSpec& c) { c.bind_to_device = "lo"; }));
  EXPECT_TRUE(differs([](SocketSpec& c) { c.free_bind = true; }));
  EXPECT_TRUE(differs([](SocketSpec& c) { c.transparent = true; }));
  EXPECT_TRUE(differs([](SocketSpec& c) { c.fast_open = 5; }));
  EXPECT_TRUE(differs([](SocketSpec& c) { c.v6only = false; }));
  EXPECT_TRUE(differs([](SocketSpec& c) { c.receive_buffer = 4096; }));
  EXPECT_TRUE(differs([](SocketSpec& c) { c.send_buffer = 4096; }));
  EXPECT_TRUE(differs([](SocketSpec& c) { c.socket_user = 1; }));
  EXPECT_TRUE(differs([](SocketSpec& c) { c.socket_group = 1; }));
  EXPECT_TRUE(differs([](SocketSpec& c) { c.socket_mode = 0600; }));
  EXPECT_TRUE(differs([](SocketSpec& c) { c.allow_abstract = true; }));
  EXPECT_TRUE(differs([](SocketSpec& c) { c.netns = NetnsMode::request; }));
}

TEST(SameBinding, EquivalentSpellingsOfOneAddress) {
  // What the kernel binds is compared, not how the operator spelled it.
  SocketSpec a;
  a.listen = *parse_address("[::1]:80");
  SocketSpec b;
  b.listen = *parse_address("[0::1]:80");
  EXPECT_NE(a.listen.text, b.listen.text);
  EXPECT_TRUE(same_binding(a, b));
}

// ---------------------------------------------------------------------------
// Files, directories and drop-ins

class PolicyFiles : public testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/sockbroker-policy-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string write(const std::string& relative, std::string_view text) {
    std::filesystem::path path = std::filesystem::path(dir_) / relative;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path) << text;
    return path.string();
  }
  std::string dir_;
};

TEST_F(PolicyFiles, FileAndDropInDirectoryInLexicalOrder) {
  std::string main = write("policy.toml", "[broker]\nmax_clients = 10\n[socket.a]\nlisten = \"127.0.0.1:80\"\n");
  std::string second = write("policy.d/9-c.toml", "[socket.c]\nlisten = \"127.0.0.1:82\"\n");
  std::string first =
      write("policy.d/10-b.toml", "[broker]\nrequest_timeout_ms = 5\n[socket.b]\nlisten = \"127.0.0.1:81\"\n");
  write("policy.d/README", "not a policy");
  write("policy.d/.hidden.toml", "garbage = [");
  write("policy.d/old.toml.bak", "garbage = [");

  LoadResult result = load_policy({main, dir_ + "/policy.d"});
  ASSERT_TRUE(result.policy.has_value()) << testing::PrintToString(format_all(result));
  EXPECT_TRUE(result.diagnostics.empty());
  EXPECT_EQ(result.policy->files, (Lines{main, first, second}));
  ASSERT_EQ(result.policy->sockets.size(), 3u);
  EXPECT_EQ(result.policy->sockets[0].name, "a");
  EXPECT_EQ(result.policy->sockets[1].name, "b");
  EXPECT_EQ(result.policy->sockets[2].name, "c");
  EXPECT_EQ(result.policy->sockets[1].where.file, first);
  EXPECT_EQ(result.policy->broker.max_clients, 10u);
  EXPECT_EQ(result.policy->broker.request_timeout_ms, 5u);
}

TEST_F(PolicyFiles, DuplicateSocketAcrossFiles) {
  std::string a = write("a.toml", "[socket.web]\nlisten = \"127.0.0.1:80\"\n");
  std::string b = write("b.toml", "# second\n[socket.web]\nlisten = \"127.0.0.1:81\"\n");
  LoadResult result = load_policy({a, b});
  EXPECT_FALSE(result.policy.has_value());
  EXPECT_EQ(format_all(result), (Lines{b + ":2:1: error: socket \"web\" is already defined at " + a + ":1:1"}));
}

TEST_F(PolicyFiles, BrokerKeySetInTwoFiles) {
  std::string a = write("a.toml", "[broker]\nmax_clients = 10\n");
  std::string b = write("b.toml", "[broker]\nrequest_timeout_ms = 10\nmax_clients = 20\n");
  LoadResult result = load_policy({a, b});
  EXPECT_FALSE(result.policy.has_value());
  EXPECT_EQ(format_all(result), (Lines{b + ":3:1: error: max_clients is already set at " + a + ":2:1"}));
}

TEST_F(PolicyFiles, ConflictAcrossFilesNamesTheOtherFile) {
  std::string a = write("a.toml", "[socket.web]\nlisten = \"127.0.0.1:80\"\n");
  std::string b = write("b.toml", "[socket.web2]\nlisten = \"127.0.0.1:80\"\n");
  LoadResult result = load_policy({a, b});
  EXPECT_EQ(format_all(result),
            (Lines{b + ":2:10: error: listen \"127.0.0.1:80\" conflicts with socket \"web\" (\"127.0.0.1:80\" at " + a +
                   ":2:10); sockets can share a port only if both set reuse_port = true"}));
}

TEST_F(PolicyFiles, MissingFile) {
  std::string missing = dir_ + "/nope.toml";
  LoadResult result = load_policy({missing});
  EXPECT_FALSE(result.policy.has_value());
  EXPECT_EQ(format_all(result), (Lines{missing + ": error: cannot read: No such file or directory"}));
}

TEST(PolicyDefaults, MissingDefaultFileIsReported) {
  std::error_code ec;
  if (std::filesystem::exists(kDefaultPolicyFile, ec)) {
    SBTEST_SKIP_OR_FAIL(kDefaultPolicyFile << " exists on this host");
  }
  LoadResult result = load_policy({});
  EXPECT_FALSE(result.policy.has_value());
  ASSERT_FALSE(result.diagnostics.empty());
  EXPECT_EQ(result.diagnostics[0].format(),
            std::string(kDefaultPolicyFile) + ": error: cannot read: No such file or directory");
}

TEST_F(PolicyFiles, DirectoryWithoutPolicyFiles) {
  write("empty.d/README", "nothing");
  LoadResult result = load_policy({dir_ + "/empty.d"});
  EXPECT_FALSE(result.policy.has_value());
  EXPECT_EQ(format_all(result), (Lines{dir_ + "/empty.d: error: directory has no *.toml files"}));
}

TEST_F(PolicyFiles, ErrorsInSeveralFilesComeInFileOrder) {
  std::string a = write("a.toml", "[socket.x]\nlisten = 1\n");
  std::string b = write("b.toml", "bogus = 1\n");
  std::string missing = dir_ + "/c.toml";
  LoadResult result = load_policy({b, missing, a});
  EXPECT_EQ(format_all(result), (Lines{b + ":1:1: error: unknown key \"bogus\" at the top level",
                                       missing + ": error: cannot read: No such file or directory",
                                       a + ":2:10: error: listen must be a string, not an integer"}));
}

TEST_F(PolicyFiles, SyntaxErrorInOneFileStillChecksTheOthers) {
  std::string a = write("a.toml", "[socket.x\n");
  std::string b = write("b.toml", "[socket.y]\nlisten = \"127.0.0.1:70000\"\n");
  LoadResult result = load_policy({a, b});
  ASSERT_EQ(result.diagnostics.size(), 2u);
  EXPECT_EQ(result.diagnostics[0].where.file, a);
  EXPECT_EQ(result.diagnostics[0].where.line, 1);
  EXPECT_EQ(result.diagnostics[1].format(), b + ":2:10: error: invalid listen address \"127.0.0.1:70000\": port 70000 "
                                                "is out of range 1..65535");
}

TEST_F(PolicyFiles, OversizedFileIsRefusedBeforeParsing) {
  std::string big = write("big.toml", std::string(4 * 1024 * 1024 + 1, '#'));
  LoadResult result = load_policy({big});
  EXPECT_EQ(format_all(result), (Lines{big + ": error: file is larger than 4194304 bytes"}));
}

// ---------------------------------------------------------------------------
// Diagnostic formatting

TEST(DiagnosticFormat, Forms) {
  Diagnostic d{Diagnostic::Severity::error, SourcePos{"p.toml", 3, 7}, "bad"};
  EXPECT_EQ(d.format(), "p.toml:3:7: error: bad");
  d.severity = Diagnostic::Severity::warning;
  EXPECT_EQ(d.format(), "p.toml:3:7: warning: bad");
  d.where.line = 0;
  EXPECT_EQ(d.format(), "p.toml: warning: bad");
  d.where.file.clear();
  EXPECT_EQ(d.format(), "warning: bad");
  EXPECT_FALSE(has_errors({d}));
  d.severity = Diagnostic::Severity::error;
  EXPECT_TRUE(has_errors({d}));
}

// Found by the policy fuzzer: bytes from the file must not reach a terminal raw.
TEST(PolicyLoaderHostile, ControlBytesInDiagnosticsAreEscaped) {
  for (std::string_view text : {std::string_view("[socket.web]\nlisten = \"1.2.3.4:8\\n0\"\n"),
                                std::string_view("x = tru\t\n"), std::string_view("[socket.web]\nlisten = \"\\u001b[31m\"\n")}) {
    LoadResult result = load_policy_text(text, "t.toml");
    ASSERT_FALSE(result.diagnostics.empty()) << text;
    for (const auto& d : result.diagnostics) {
      std::string line = d.format();
      for (unsigned char c : line) EXPECT_FALSE(c < 0x20 || c == 0x7f) << testing::PrintToString(line);
    }
  }
  Lines lines = check("[socket.web]\nlisten = \"1.2.3.4:8\\n0\"\n");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("\\x0a"), std::string::npos) << lines[0];
}

}  // namespace
}  // namespace sockbroker::policy
