// libsockbroker, C++ API: ask sockbrokerd for named, already-bound sockets.
//
//   auto web = sockbroker::acquire("web");          // one-shot
//   if (!web) { std::cerr << web.error().message << '\n'; return 1; }
//   sockbroker::lockdown();                         // from now on, no bind(2)
//   accept(web->fd.get(), ...);
//
// Errors carry the same SOCKBROKER_E_* codes as the C API (client.h) and the
// broker's own one-line explanation.
#pragma once

#include <sockbroker/client.h>
#include <sockbroker/fd.hpp>
#include <sockbroker/status.hpp>

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sockbroker {

inline constexpr const char* kDefaultControlPath = "/run/sockbroker/control.sock";

// The control path to use: `explicit_path` if not empty, else $SOCKBROKER_CONTROL, else the default.
[[nodiscard]] std::string resolve_control_path(std::string_view explicit_path = {});

// A socket handed over by the broker.
struct Grant {
  UniqueFd fd;           // close-on-exec
  std::string name;      // the policy's name for it
  std::string type;      // "stream", "datagram" or "seqpacket"
  int family = 0;        // AF_INET, AF_INET6, AF_UNIX
  std::string address;   // as the policy writes it
};

// One process holding a socket (Client::holders()).
struct HolderInfo {
  std::string socket;  // the policy name
  std::int32_t pid = 0;
  std::uint32_t uid = 0;
  std::string unit;    // its systemd unit; empty when none is known
};

// What an administrator's reload or revoke did.
struct AdminOutcome {
  bool ok = false;
  std::string message;               // one line
  std::vector<std::string> details;  // e.g. the policy's FILE:LINE:COL diagnostics
  // Sockets the broker was to (re)bind and could not: it retries them with
  // backoff. Not empty: the policy was applied (or the socket revoked), and
  // the failure is binding, not the policy.
  std::vector<std::string> failed_sockets = {};
};

struct SocketList {
  std::vector<SocketInfo> sockets;
  bool admin_view = false;
};


// What the broker tells a watching connection (Client::watch) when a revoke,
// or a reload that replaced a socket, ended a grant of this process. Sent
// before the socket is shut down: when accept(2) fails (EINVAL), the notice is
// already queued. A shared socket has been shut down; a reuse_port member
// still serves until closed, but the broker no longer counts it. Either way
// the process should get the socket afresh: restarting is the simple way.
struct RevokeNotice {
  std::string socket;   // the policy name
  std::string message;  // one line, for a log
};

// A connection to the broker, kept open for several requests. Not for use from
// two threads at once. Reconnects once, transparently, if the broker dropped an
// idle connection, and before a request made in a child forked since it
// connected: the broker serves a connection's requests only from the process
// that connected it.
class Client {
 public:
  // control: the control path, or empty for resolve_control_path().
  [[nodiscard]] static Result<Client> connect(std::string_view control = {});

  [[nodiscard]] Result<Grant> acquire(std::string_view name, int flags = 0);
  // For a netns = "request" socket: the broker binds it inside the network
  // namespace netns_fd refers to (an open /proc/PID/ns/net or /run/netns/NAME,
  // sent as SCM_RIGHTS; the caller keeps its own descriptor) and hands it over.
  // A second grant in the same namespace while the first is held fails with
  // SOCKBROKER_E_BIND ("address in use") unless the socket is reuse_port. For a
  // netns = "broker" socket the namespace is ignored: a plain acquire().
  [[nodiscard]] Result<Grant> acquire_in_netns(std::string_view name, int netns_fd, int flags = 0);
  // The policy socket bound at `address`: what a program passed to bind(2),
  // of socket type `type` (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET) and, for
  // IPv6, the program's IPV6_V6ONLY (a policy socket on "[::]:80" serves the
  // program only if its v6only is the same). What `sockbroker run` asks for
  // when it answers a supervised program's bind. AF_INET, AF_INET6, AF_UNIX.
  [[nodiscard]] Result<Grant> acquire_address(const sockaddr* address, socklen_t length, int type, bool v6only);
  [[nodiscard]] Result<SocketList> list();
  // Administrators: the processes holding each socket, at most 8 named per
  // socket (SocketInfo::holders counts them all). `sockbroker list --holders`.
  [[nodiscard]] Result<std::vector<HolderInfo>> holders();
  // Administrators (root or admin_group): re-read the policy now. A refused
  // (invalid) policy is an AdminOutcome with ok = false, not an Error.
  [[nodiscard]] Result<AdminOutcome> reload();
  // Administrators: shut the socket down for every holder and bind it afresh.
  [[nodiscard]] Result<AdminOutcome> revoke(std::string_view name);
  // Administrators: make the broker re-execute its binary in place (as
  // SIGUSR2 does). The answer comes before the upgrade; status().upgrades
  // counts the upgrades done.
  [[nodiscard]] Result<AdminOutcome> upgrade();
  // Administrators: the broker's counters, then every socket (list()'s pages).
  [[nodiscard]] Result<BrokerStatus> status();

  // Keeps this connection open for good (no request_timeout_ms) and asks the
  // broker to send a RevokeNotice on it whenever a revoke or a reload ends a
  // grant held by the process that connected it. Use a Client for this alone:
  // notices that arrive while another request waits for its reply are dropped.
  [[nodiscard]] Status watch();
  // The connection, to poll(2) for POLLIN (a notice, or the broker hanging up)
  // beside one's own descriptors; -1 when not connected.
  [[nodiscard]] int notice_fd() const noexcept { return conn_.get(); }
  // The next notice, without blocking: std::nullopt when none is queued. An
  // error with SOCKBROKER_E_UNAVAILABLE means the broker closed the connection
  // (it stopped or restarted): connect again and watch() again.
  [[nodiscard]] Result<std::optional<RevokeNotice>> next_notice();

  [[nodiscard]] const std::string& control_path() const noexcept { return path_; }

 private:
  Client(UniqueFd conn, std::string path, int owner) : conn_(std::move(conn)), path_(std::move(path)), owner_(owner) {}
  UniqueFd conn_;
  std::string path_;
  int owner_ = 0;  // the pid that connected conn_
  friend struct ClientAccess;
};

// One-shot: connect, acquire, close.
[[nodiscard]] Result<Grant> acquire(std::string_view name, std::string_view control = {});

struct LockdownOptions {
  bool allow_listen = false;  // permit listen(2) (it auto-binds an unbound socket)
};

// Installs the lockdown seccomp filter on every thread (see client.h).
[[nodiscard]] Status lockdown(const LockdownOptions& options = {});

// The filter lockdown() would install, as libseccomp's pseudo-filter-code text.
[[nodiscard]] Result<std::string> lockdown_filter_text(const LockdownOptions& options = {});

}  // namespace sockbroker
