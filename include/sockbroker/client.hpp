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

#include <cstdint>
#include <string>
#include <string_view>
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

// One line of `sockbroker list`.
struct SocketInfo {
  std::string name;
  std::string type;
  std::string address;
  // The administrator's view only (is_admin_view on the listing):
  std::string state;    // "bound" or "failed"
  std::string detail;   // why it failed
  std::uint32_t holders = 0;        // live grants: held by processes still running
  std::uint64_t grants_total = 0;   // since the socket was (re)bound
  std::uint32_t max_grants = 0;     // 0: unlimited
  bool reuse_port = false;
};

// What an administrator's reload or revoke did.
struct AdminOutcome {
  bool ok = false;
  std::string message;               // one line
  std::vector<std::string> details;  // e.g. the policy's FILE:LINE:COL diagnostics
};

struct SocketList {
  std::vector<SocketInfo> sockets;
  bool admin_view = false;
};

// A connection to the broker, kept open for several requests. Not for use from
// two threads at once. Reconnects once, transparently, if the broker dropped an
// idle connection.
class Client {
 public:
  // control: the control path, or empty for resolve_control_path().
  [[nodiscard]] static Result<Client> connect(std::string_view control = {});

  [[nodiscard]] Result<Grant> acquire(std::string_view name, int flags = 0);
  // For a netns = "request" socket: bind it inside the namespace netns_fd refers to.
  [[nodiscard]] Result<Grant> acquire_in_netns(std::string_view name, int netns_fd, int flags = 0);
  [[nodiscard]] Result<SocketList> list();
  // Administrators (root or admin_group): re-read the policy now. A refused
  // (invalid) policy is an AdminOutcome with ok = false, not an Error.
  [[nodiscard]] Result<AdminOutcome> reload();
  // Administrators: shut the socket down for every holder and bind it afresh.
  [[nodiscard]] Result<AdminOutcome> revoke(std::string_view name);

  [[nodiscard]] const std::string& control_path() const noexcept { return path_; }

 private:
  Client(UniqueFd conn, std::string path) : conn_(std::move(conn)), path_(std::move(path)) {}
  UniqueFd conn_;
  std::string path_;
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
