// What a program set on its own socket before bind(2), carried over to the
// policy socket the supervisor puts in its place: a program that asked for
// TCP_NODELAY or a non-blocking socket gets it, as after a real bind, instead
// of losing it without a word.
#pragma once

#include <string>
#include <vector>

#include <sockbroker/fd.hpp>

namespace sockbroker::cli {

struct Carried {
  std::vector<std::string> options;  // what was set on the granted socket, for the log
};

// What a fresh socket of one (family, type, protocol) holds before anyone
// touches it, learned once from a socket made for the purpose and kept: a
// supervisor serving many binds makes and frees one pristine socket per kind,
// not one per bind. (The defaults of a network namespace's sysctls are read
// when a kind is first seen; the supervisor and its program stay in one
// namespace, and a sysctl changed later makes an option look set, which
// carries the new default over: harmless.)
class PristineDefaults {
 public:
  struct Values;
  PristineDefaults();
  ~PristineDefaults();
  PristineDefaults(const PristineDefaults&) = delete;
  PristineDefaults& operator=(const PristineDefaults&) = delete;
  // The defaults of that kind of socket, learned now if never seen.
  [[nodiscard]] Result<const Values*> of(int family, int type, int protocol);

 private:
  struct Kind;
  std::vector<Kind> kinds_;
};

// Compares `program` (the program's own, unbound socket) with a fresh socket
// of its family, type and protocol (`defaults`), and sets on `granted` every option the
// program changed from the default that a holder may set: O_NONBLOCK,
// SO_KEEPALIVE, SO_LINGER, SO_RCVBUF, SO_SNDBUF, SO_PRIORITY, TCP_NODELAY,
// TCP_DEFER_ACCEPT, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT,
// IP_TOS, IPV6_TCLASS. (IPV6_V6ONLY decides which socket matches; SO_REUSEADDR
// and SO_REUSEPORT never took effect.) An option that cannot be set on the
// granted socket is an error naming it: the bind is refused rather than the
// setting silently lost. The granted socket may be shared with other holders,
// as systemd's socket-activated sockets are: what is set on it is set for all,
// which is why O_NONBLOCK is only ever set, never cleared.
[[nodiscard]] Result<Carried> carry_over(int program, int granted, PristineDefaults& defaults);

}  // namespace sockbroker::cli
